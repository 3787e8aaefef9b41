//! The `Interval` mode's background thread: fdatasyncs the log every interval.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::group_commit::{Core, Need};

/// A running sync thread and how to stop it.
#[derive(Debug)]
pub struct Background {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts a thread that syncs `core` every `every` until stopped or the core is dropped.
    /// It holds only a weak reference so that dropping the last handle still drops the log.
    pub fn spawn(core: &Arc<Core>, every: Duration) -> std::io::Result<Background> {
        let weak: Weak<Core> = Arc::downgrade(core);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tasklog-wal-sync".into())
            .spawn(move || {
                loop {
                    {
                        let mut stopped = stop2.0.lock();
                        if !*stopped {
                            stop2.1.wait_for(&mut stopped, every);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let Some(core) = weak.upgrade() else { return };
                    let target = core.state.lock().next_lsn - 1;
                    if let Err(e) = core.drive(target, Need::Synced) {
                        tracing::warn!(error = %e, "background log sync failed; stopping it");
                        return;
                    }
                }
            })?;
        Ok(Background {
            stop,
            handle: Some(handle),
        })
    }

    /// Signals the thread to stop; joins it if `join` (never from the thread itself).
    pub fn stop(mut self, join: bool) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        join_unless_current(self.handle.take(), join);
    }
}

/// Joins the thread `handle` names if `join`, unless it is the current thread (a log's thread
/// may drop the log's last reference and run its drop, which stops it).
pub fn join_unless_current(handle: Option<JoinHandle<()>>, join: bool) {
    if let Some(h) = handle
        && join
        && h.thread().id() != std::thread::current().id()
    {
        let _ = h.join();
    }
}
