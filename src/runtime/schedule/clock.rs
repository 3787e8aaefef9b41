//! The scheduler's clock: a seam so that tests can move time (across a DST change, a week of
//! downtime, backwards) without waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::task::Timestamp;

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    /// Now, in milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Timestamp::now().as_millis()
    }
}

/// A clock that moves only when told to (tests). Clones share one time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock reading `at`.
    pub fn at(at: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(at.as_millis())))
    }
    /// Sets the time (backwards too: a clock jump).
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_millis(), Ordering::SeqCst);
    }
    /// Moves the time forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
