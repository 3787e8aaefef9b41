//! The replay target shared by every system: per task, its latest state and its event count.

use std::collections::HashMap;

use crate::event::{self, Header};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskState {
    pub seq: u32,
    pub kind: u8,
    pub ts_ms: u64,
    pub events: u32,
}

#[derive(Debug, Default)]
pub struct Rebuilt {
    pub tasks: HashMap<u64, TaskState>,
    pub events: u64,
}

impl Rebuilt {
    pub fn with_capacity(tasks: usize) -> Self {
        Rebuilt {
            tasks: HashMap::with_capacity(tasks),
            events: 0,
        }
    }

    pub fn apply_bytes(&mut self, ev: &[u8]) {
        self.apply(event::decode(ev));
    }

    pub fn apply(&mut self, h: Header) {
        let s = self.tasks.entry(h.task_id).or_default();
        if h.seq >= s.seq {
            s.seq = h.seq;
            s.kind = h.kind;
            s.ts_ms = h.ts_ms;
        }
        s.events += 1;
        self.events += 1;
    }

    /// Rebuilds the expected state directly from the generated events.
    pub fn expected(written: &[event::Event]) -> Self {
        let mut want = Rebuilt::with_capacity(written.len() / 5 + 1);
        for ev in written {
            want.apply_bytes(ev);
        }
        want
    }

    /// Checks a replay against the expected state. A benchmark whose replay lost or invented
    /// events measures nothing, so a mismatch fails the run. With `timestamps` false the
    /// tasks' `ts_ms` are not compared (tasklog's store stamps events with its own clock).
    pub fn verify(&self, want: &Rebuilt, timestamps: bool) -> Result<(), String> {
        if self.events != want.events {
            return Err(format!(
                "replayed {} events, wrote {}",
                self.events, want.events
            ));
        }
        let same = |a: &TaskState, b: &TaskState| {
            (a.seq, a.kind, a.events) == (b.seq, b.kind, b.events)
                && (!timestamps || a.ts_ms == b.ts_ms)
        };
        let differs = self.tasks.len() != want.tasks.len()
            || want
                .tasks
                .iter()
                .any(|(id, w)| self.tasks.get(id).is_none_or(|g| !same(g, w)));
        if differs {
            return Err(format!(
                "rebuilt state differs: {} tasks rebuilt, {} expected",
                self.tasks.len(),
                want.tasks.len()
            ));
        }
        Ok(())
    }
}
