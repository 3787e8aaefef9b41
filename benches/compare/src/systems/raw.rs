//! The raw limit of the disk: a plain file of 128-byte records and `fdatasync`.
//!
//! Record: the 123-byte event, 4 zero bytes, then `MARKER`, so that W4 stops at the first slot
//! of a preallocated file that was never written. `prealloc` chooses between a file that grows
//! with every write (each fdatasync also flushes the new size) and one whose blocks were
//! allocated before the clock started (`posix_fallocate`-style `fallocate`, or zero-filled when
//! `TASKLOG_COMPARE_ZERO_FILL=1`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use rustix::fs::{FallocateFlags, fallocate, fdatasync, fsync};

use super::{Replayed, Res, System, Timed, concurrent, sequential};
use crate::event::{EVENT_LEN, Event};
use crate::state::Rebuilt;

pub const RECORD_LEN: usize = 128;
const MARKER: u8 = 0xA5;
const FILE_NAME: &str = "raw.log";

pub struct Raw {
    pub prealloc: bool,
}

fn record(ev: &[u8]) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[..EVENT_LEN].copy_from_slice(ev);
    r[RECORD_LEN - 1] = MARKER;
    r
}

impl Raw {
    /// Creates the log file, preallocated for `records` records if asked, and makes its
    /// existence and size durable before the clock starts.
    fn create(&self, dir: &Path, records: usize) -> Res<File> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        if self.prealloc {
            let len = (records * RECORD_LEN) as u64;
            if std::env::var_os("TASKLOG_COMPARE_ZERO_FILL").is_some_and(|v| v == "1") {
                let zeros = vec![0u8; 1 << 20];
                let mut left = len as usize;
                let mut f = &file;
                while left > 0 {
                    let n = left.min(zeros.len());
                    f.write_all(&zeros[..n])?;
                    left -= n;
                }
            } else {
                fallocate(&file, FallocateFlags::empty(), 0, len)?;
            }
        }
        fsync(&file)?;
        fsync(File::open(dir)?)?;
        let mut f = &file;
        std::io::Seek::rewind(&mut f)?;
        Ok(file)
    }
}

/// Minimal leader/follower group commit: appenders queue their record in `buf`; whoever finds no
/// leader takes the whole buffer, writes and fdatasyncs it outside the lock, publishes the
/// `synced` watermark and wakes everyone. The result, Ok or Err, reaches every waiter.
struct Group {
    file: File,
    inner: Mutex<GroupInner>,
    cv: Condvar,
}

struct GroupInner {
    buf: Vec<u8>,
    spare: Vec<u8>,
    appended: u64,
    synced: u64,
    offset: u64,
    leader: bool,
    failed: Option<String>,
}

impl Group {
    fn append(&self, ev: &[u8]) -> Res<()> {
        let mut g = self
            .inner
            .lock()
            .expect("group mutex should not be poisoned");
        g.buf.extend_from_slice(&record(ev));
        g.appended += 1;
        let me = g.appended;
        loop {
            if g.synced >= me {
                return Ok(());
            }
            if let Some(e) = &g.failed {
                return Err(e.clone().into());
            }
            if g.leader {
                g = self.cv.wait(g).expect("group mutex should not be poisoned");
                continue;
            }
            g.leader = true;
            let spare = std::mem::take(&mut g.spare);
            let batch = std::mem::replace(&mut g.buf, spare);
            let target = g.appended;
            let offset = g.offset;
            g.offset += batch.len() as u64;
            drop(g);
            let r = self
                .file
                .write_all_at(&batch, offset)
                .and_then(|()| fdatasync(&self.file).map_err(std::io::Error::from));
            g = self
                .inner
                .lock()
                .expect("group mutex should not be poisoned");
            match r {
                Ok(()) => g.synced = target,
                Err(e) => g.failed = Some(format!("group commit: {e}")),
            }
            let mut batch = batch;
            batch.clear();
            g.spare = batch;
            g.leader = false;
            self.cv.notify_all();
        }
    }
}

impl System for Raw {
    fn w1(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
        let file = self.create(dir, events.len())?;
        let mut f = &file;
        sequential(events, |ev| {
            f.write_all(&record(ev))?;
            fdatasync(&file)?;
            Ok(())
        })
    }

    fn w2(&self, dir: &Path, events: &[Event], threads: usize) -> Res<Timed> {
        let file = self.create(dir, events.len())?;
        let group = Group {
            file,
            inner: Mutex::new(GroupInner {
                buf: Vec::with_capacity(events.len() * RECORD_LEN),
                spare: Vec::with_capacity(events.len() * RECORD_LEN),
                appended: 0,
                synced: 0,
                offset: 0,
                leader: false,
                failed: None,
            }),
            cv: Condvar::new(),
        };
        concurrent(events, threads, |ev| group.append(ev))
    }

    fn w3(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
        let file = self.create(dir, events.len())?;
        let mut f = &file;
        let mut buf = Vec::with_capacity(1 << 20);
        let start = Instant::now();
        for ev in events {
            buf.extend_from_slice(&record(ev));
            if buf.len() + RECORD_LEN > buf.capacity() {
                f.write_all(&buf)?;
                buf.clear();
            }
        }
        f.write_all(&buf)?;
        fdatasync(&file)?;
        Ok(Timed {
            elapsed: start.elapsed(),
            lat_ns: Vec::new(),
            fsyncs: None,
        })
    }

    fn w4(&self, dir: &Path, tasks: usize) -> Res<Replayed> {
        let start = Instant::now();
        let mut file = File::open(dir.join(FILE_NAME))?;
        let mut state = Rebuilt::with_capacity(tasks);
        // NOTE: streamed through one reused 1 MiB buffer (a whole-file Vec would mostly time
        // page faults); 1 MiB is a multiple of RECORD_LEN, so records never straddle reads.
        const _: () = assert!((1 << 20) % RECORD_LEN == 0);
        let mut buf = vec![0u8; 1 << 20];
        'read: loop {
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            for r in buf[..filled].chunks_exact(RECORD_LEN) {
                if r[RECORD_LEN - 1] != MARKER {
                    break 'read;
                }
                state.apply_bytes(&r[..EVENT_LEN]);
            }
            if filled < buf.len() {
                break;
            }
        }
        Ok(Replayed::new(start.elapsed(), state))
    }
}

/// Measures this disk's durable-write latency: `n` times a 128-byte write + fdatasync on a
/// preallocated file. Returns (p50, p99) in microseconds. Printed before and after the run, so a
/// reader can tell whether the shared disk went through a slow phase while it was measured.
pub fn fsync_probe(dir: &Path, n: usize) -> Res<(f64, f64)> {
    let raw = Raw { prealloc: true };
    let sub = dir.join("fsync-probe");
    std::fs::create_dir_all(&sub)?;
    let events = vec![[0u8; EVENT_LEN]; n];
    let mut t = raw.w1(&sub, &events)?;
    std::fs::remove_dir_all(&sub)?;
    let s = crate::stats::Sample::new(n, t.elapsed, &mut t.lat_ns, 0);
    Ok((s.p50_us.unwrap_or(0.0), s.p99_us.unwrap_or(0.0)))
}
