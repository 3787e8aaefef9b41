//! The `Buffered` mode's flusher thread: writes a full buffer (`BUFFER_FLUSH_BYTES`) to its
//! segment while the appender goes on filling the next one.
//!
//! Why: a bulk load's appender used to write each full buffer itself, so the kernel's copy
//! into the page cache (about a sixth of a buffered bulk load, W3) ran on the appender's
//! thread, between its batches. On another core it overlaps the next batches' work.
//!
//! What it changes: nothing that `Buffered` promises. Records are acknowledged once buffered,
//! as before, and are durable after `sync()`/`close()` (which wait for the flusher's round, as
//! for any leader's: `Core::drive`). A power cut without a sync loses what was not yet synced,
//! as before; only how much of it had reached the OS differs. The flusher writes through
//! `Core::drive`, so it is one more leader: the segment roll, the poisoning on a failed write
//! and the close protocol are those of every leader.
//!
//! Memory stays bounded: an appender that finds two buffers' worth pending (the flusher is
//! still writing the one before) writes itself, after the flusher's round (`Core::submit`).

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::Lsn;
use super::group_commit::{Core, Need};
use crate::error::Error;

/// What the appender asks of the flusher.
#[derive(Debug, Default)]
pub struct Requests {
    state: Mutex<Asked>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct Asked {
    /// Write up to this LSN (the highest asked since the flusher last looked).
    up_to: Option<Lsn>,
    stop: bool,
}

impl Requests {
    /// Asks the flusher to write every record up to `lsn`; returns at once.
    pub fn write_up_to(&self, lsn: Lsn) {
        let mut asked = self.state.lock();
        asked.up_to = Some(asked.up_to.map_or(lsn, |l| l.max(lsn)));
        self.cond.notify_one();
    }

    /// Waits for a request; `None` once stopped.
    fn next(&self) -> Option<Lsn> {
        let mut asked = self.state.lock();
        loop {
            if asked.stop {
                return None;
            }
            if let Some(lsn) = asked.up_to.take() {
                return Some(lsn);
            }
            self.cond.wait(&mut asked);
        }
    }
}

/// A running flusher thread and how to stop it.
#[derive(Debug)]
pub struct Flusher {
    requests: Arc<Requests>,
    handle: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts a thread that writes `core`'s buffer when asked through `requests`, until
    /// stopped, the core is dropped or a write fails (which poisons the log: the appender then
    /// gets the error). It holds only a weak reference so that dropping the last handle still
    /// drops the log.
    pub fn spawn(core: &Arc<Core>, requests: Arc<Requests>) -> std::io::Result<Flusher> {
        let weak: Weak<Core> = Arc::downgrade(core);
        let asked = requests.clone();
        let handle = std::thread::Builder::new()
            .name("tasklog-wal-flush".into())
            .spawn(move || {
                while let Some(lsn) = asked.next() {
                    let Some(core) = weak.upgrade() else { return };
                    match core.drive(lsn, Need::Written) {
                        Ok(()) => {}
                        // `close()` stops this thread right after; nothing is lost (it syncs).
                        Err(Error::Closed) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "background log write failed; stopping it");
                            return;
                        }
                    }
                }
            })?;
        Ok(Flusher {
            requests,
            handle: Some(handle),
        })
    }

    /// Signals the thread to stop; joins it if `join` (never from the thread itself).
    pub fn stop(mut self, join: bool) {
        self.requests.state.lock().stop = true;
        self.requests.cond.notify_all();
        super::background::join_unless_current(self.handle.take(), join);
    }
}
