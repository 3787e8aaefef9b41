//! tasklog, full store: the workloads as task operations (submit, start, progress,
//! complete/fail/cancel) through the public `Store` API, durable by default.
//!
//! TODO: wire this once `tasklog::Store` exists. Map event kinds to operations: 0 created ->
//! submit, 1 started -> start, 2 progress -> progress, 3/4/5 -> complete/fail/cancel; W3 with
//! the store's buffered durability and one sync at the end; W4 = `Store::open`, which rebuilds
//! tasks and history, then read every task's state and history length.

use std::path::Path;

use crate::event::Event;
use crate::systems::{NOT_WIRED, Replayed, Res, System, Timed};

pub struct TasklogStore;

impl System for TasklogStore {
    fn w1(&self, _: &Path, _: &[Event]) -> Res<Timed> {
        Err(NOT_WIRED.into())
    }
    fn w2(&self, _: &Path, _: &[Event], _: usize) -> Res<Timed> {
        Err(NOT_WIRED.into())
    }
    fn w3(&self, _: &Path, _: &[Event]) -> Res<Timed> {
        Err(NOT_WIRED.into())
    }
    fn w4(&self, _: &Path, _: usize) -> Res<Replayed> {
        Err(NOT_WIRED.into())
    }
}
