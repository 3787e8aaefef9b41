//! SQLite through rusqlite (bundled), WAL mode, `synchronous=FULL` (durable at every COMMIT).
//!
//! Schema: `events` (one row per event, the text as a BLOB) and `tasks` (per task: latest
//! seq/kind/ts and event count, upserted with every event). W1/W2: one transaction per event
//! (insert + upsert). W2 shares one connection behind a mutex: one connection per thread
//! collapses under SQLite's busy handler. W3: all events in one transaction, one COMMIT at the
//! end. W4: open the database and `SELECT` every event in rowid order, rebuilding per-task
//! state and counts in a HashMap (the same work the logs do; reading the `tasks` table instead
//! would be cheaper but would not replay the history).

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use rusqlite::{Connection, params};

use super::{Replayed, Res, System, Timed, concurrent, sequential};
use crate::event::{self, Event};
use crate::state::Rebuilt;

const DB: &str = "bench.sqlite";

const INSERT_EVENT: &str =
    "INSERT INTO events (task_id, seq, kind, ts_ms, text) VALUES (?1, ?2, ?3, ?4, ?5)";
const UPSERT_TASK: &str = "INSERT INTO tasks (task_id, seq, kind, ts_ms, events) \
     VALUES (?1, ?2, ?3, ?4, 1) \
     ON CONFLICT(task_id) DO UPDATE SET seq = excluded.seq, kind = excluded.kind, \
     ts_ms = excluded.ts_ms, events = tasks.events + 1";

pub struct Sqlite {
    /// `FULL` (durable) or `NORMAL` (WAL: a power loss can take the last commits).
    pub synchronous: &'static str,
}

impl Sqlite {
    fn open(&self, dir: &Path) -> Res<Connection> {
        let conn = Connection::open(dir.join(DB))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", self.synchronous)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                 lsn INTEGER PRIMARY KEY, task_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                 kind INTEGER NOT NULL, ts_ms INTEGER NOT NULL, text BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (
                 task_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
                 ts_ms INTEGER NOT NULL, events INTEGER NOT NULL);",
        )?;
        Ok(conn)
    }
}

/// Inserts the event and upserts its task, inside whatever transaction is open.
fn write_event(conn: &Connection, ev: &[u8]) -> Res<()> {
    let h = event::decode(ev);
    let (id, ts) = (h.task_id as i64, h.ts_ms as i64);
    conn.prepare_cached(INSERT_EVENT)?.execute(params![
        id,
        h.seq,
        h.kind,
        ts,
        &ev[event::EVENT_LEN - event::TEXT_LEN..]
    ])?;
    conn.prepare_cached(UPSERT_TASK)?
        .execute(params![id, h.seq, h.kind, ts])?;
    Ok(())
}

/// One durable transaction per event.
fn append_one(conn: &mut Connection, ev: &[u8]) -> Res<()> {
    let tx = conn.transaction()?;
    write_event(&tx, ev)?;
    tx.commit()?;
    Ok(())
}

fn close(conn: Connection) -> Res<()> {
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

impl System for Sqlite {
    fn w1(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
        let mut conn = self.open(dir)?;
        let t = sequential(events, |ev| append_one(&mut conn, ev))?;
        close(conn)?;
        Ok(t)
    }

    fn w2(&self, dir: &Path, events: &[Event], threads: usize) -> Res<Timed> {
        let conn = Mutex::new(self.open(dir)?);
        let t = concurrent(events, threads, |ev| {
            let mut c = conn
                .lock()
                .expect("connection mutex should not be poisoned");
            append_one(&mut c, ev)
        })?;
        close(
            conn.into_inner()
                .expect("connection mutex should not be poisoned"),
        )?;
        Ok(t)
    }

    fn w3(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
        let mut conn = self.open(dir)?;
        let start = Instant::now();
        let tx = conn.transaction()?;
        for ev in events {
            write_event(&tx, ev)?;
        }
        tx.commit()?;
        let elapsed = start.elapsed();
        close(conn)?;
        Ok(Timed {
            elapsed,
            lat_ns: Vec::new(),
            fsyncs: None,
        })
    }

    fn w4(&self, dir: &Path, tasks: usize) -> Res<Replayed> {
        let start = Instant::now();
        let conn = self.open(dir)?;
        let mut state = Rebuilt::with_capacity(tasks);
        {
            let mut stmt =
                conn.prepare("SELECT task_id, seq, kind, ts_ms FROM events ORDER BY lsn")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                state.apply(event::Header {
                    task_id: row.get::<_, i64>(0)? as u64,
                    seq: row.get(1)?,
                    kind: row.get(2)?,
                    ts_ms: row.get::<_, i64>(3)? as u64,
                });
            }
        }
        let elapsed = start.elapsed();
        close(conn)?;
        Ok(Replayed::new(elapsed, state))
    }
}
