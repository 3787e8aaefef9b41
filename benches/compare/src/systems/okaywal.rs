//! okaywal 0.3: each event is one entry of one chunk, committed durably (okaywal batches the
//! fsyncs of concurrent committers).
//!
//! W3: okaywal has no non-durable commit (every `EntryWriter::commit` fsyncs), so the bulk load
//! writes all events as chunks of ONE entry and commits it once at the end: one durability point,
//! as the workload asks, and the entry is atomic (all or nothing after a crash, like the others'
//! unsynced tail). Checkpointing is disabled (`checkpoint_after_bytes = u64::MAX`) so that the
//! segment is not recycled before W4 replays it. W1/W2 use okaywal's default configuration.
//!
//! W4: `WriteAheadLog::open` drives recovery through our `LogManager`, which reads every chunk
//! (checking its CRC) and applies an entry's events only once its end-of-entry marker is read.

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use okaywal::{
    Configuration, Entry, EntryId, LogManager, ReadChunkResult, SegmentReader, WriteAheadLog,
};

use super::{Replayed, Res, System, Timed, concurrent, sequential};
use crate::event::{self, EVENT_LEN, Event};
use crate::state::Rebuilt;

pub struct OkayWal;

/// Rebuilds per-task state during recovery; ignores checkpoints (nothing sits behind the log).
#[derive(Debug)]
struct Replayer {
    state: Arc<Mutex<Rebuilt>>,
}

impl LogManager for Replayer {
    fn recover(&mut self, entry: &mut Entry<'_>) -> std::io::Result<()> {
        let mut pending = Vec::new();
        loop {
            match entry.read_chunk()? {
                ReadChunkResult::Chunk(mut chunk) => {
                    if chunk.bytes_remaining() as usize != EVENT_LEN {
                        return Err(std::io::Error::other("okaywal chunk is not one event"));
                    }
                    let mut buf = [0u8; EVENT_LEN];
                    chunk.read_exact(&mut buf)?;
                    if !chunk.check_crc()? {
                        return Err(std::io::Error::other("okaywal chunk CRC mismatch"));
                    }
                    pending.push(event::decode(&buf));
                }
                ReadChunkResult::EndOfEntry => break,
                // NOTE: an entry that was never committed replays nothing.
                ReadChunkResult::AbortedEntry => return Ok(()),
            }
        }
        let mut state = self
            .state
            .lock()
            .expect("state mutex should not be poisoned");
        for h in pending {
            state.apply(h);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

fn open(config: Configuration, tasks: usize) -> Res<(WriteAheadLog, Arc<Mutex<Rebuilt>>)> {
    let state = Arc::new(Mutex::new(Rebuilt::with_capacity(tasks)));
    let wal = config.open(Replayer {
        state: Arc::clone(&state),
    })?;
    Ok((wal, state))
}

fn bulk_config(dir: &Path) -> Configuration {
    Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX)
}

fn append_one(wal: &WriteAheadLog, ev: &[u8]) -> Res<()> {
    let mut w = wal.begin_entry()?;
    w.write_chunk(ev)?;
    w.commit()?;
    Ok(())
}

impl System for OkayWal {
    fn w1(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
        let (wal, _) = open(Configuration::default_for(dir), 0)?;
        let t = sequential(events, |ev| append_one(&wal, ev))?;
        wal.shutdown()?;
        Ok(t)
    }

    fn w2(&self, dir: &Path, events: &[Event], threads: usize) -> Res<Timed> {
        let (wal, _) = open(Configuration::default_for(dir), 0)?;
        let t = concurrent(events, threads, |ev| append_one(&wal, ev))?;
        wal.shutdown()?;
        Ok(t)
    }

    fn w3(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
        let (wal, _) = open(bulk_config(dir), 0)?;
        let start = Instant::now();
        let mut w = wal.begin_entry()?;
        for ev in events {
            w.write_chunk(ev)?;
        }
        w.commit()?;
        let elapsed = start.elapsed();
        wal.shutdown()?;
        Ok(Timed {
            elapsed,
            lat_ns: Vec::new(),
            fsyncs: None,
        })
    }

    fn w4(&self, dir: &Path, tasks: usize) -> Res<Replayed> {
        let start = Instant::now();
        let (wal, state) = open(bulk_config(dir), tasks)?;
        let elapsed = start.elapsed();
        wal.shutdown()?;
        let state = std::mem::take(&mut *state.lock().expect("state mutex should not be poisoned"));
        Ok(Replayed::new(elapsed, state))
    }
}
