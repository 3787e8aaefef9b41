//! The runtime's ready queue: highest priority first, equal priorities in submission order,
//! retries held back until their backoff has passed, kinds held back while the store refuses
//! their starts (paused, or at a concurrency or rate limit).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

/// One queued task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Task id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// 0 to 10, higher first.
    pub priority: u8,
    /// Not before this time (ms since the epoch).
    pub not_before_ms: i64,
    seq: u64,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Ready and delayed tasks.
#[derive(Debug, Default)]
pub struct Queue {
    ready: BinaryHeap<Entry>,
    delayed: BTreeMap<(i64, u64), Entry>,
    queued: HashSet<String>,
    seq: u64,
    /// Kinds whose tasks are not handed out before this time (ms since the epoch).
    held: HashMap<String, i64>,
}

impl Queue {
    /// Queues a task unless it is already queued.
    pub fn push(
        &mut self,
        id: String,
        kind: String,
        priority: u8,
        not_before_ms: i64,
        now_ms: i64,
    ) {
        if !self.queued.insert(id.clone()) {
            return;
        }
        self.seq += 1;
        let e = Entry {
            id,
            kind,
            priority,
            not_before_ms,
            seq: self.seq,
        };
        if not_before_ms > now_ms {
            self.delayed.insert((not_before_ms, e.seq), e);
        } else {
            self.ready.push(e);
        }
    }

    /// The next ready task of a kind not held back.
    pub fn pop(&mut self, now_ms: i64) -> Option<Entry> {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            self.ready.push(entry.remove());
        }
        self.held.retain(|_, until| *until > now_ms);
        let mut skipped = Vec::new();
        let found = loop {
            let Some(e) = self.ready.pop() else {
                break None;
            };
            if self.held.contains_key(&e.kind) {
                skipped.push(e);
                continue;
            }
            break Some(e);
        };
        self.ready.extend(skipped);
        let e = found?;
        self.queued.remove(&e.id);
        Some(e)
    }

    /// Puts back an entry that could not be claimed yet, in its old place.
    pub fn restore(&mut self, e: Entry) {
        if self.queued.insert(e.id.clone()) {
            self.ready.push(e);
        }
    }

    /// Hands out no task of `kind` before `until_ms`.
    pub fn hold(&mut self, kind: &str, until_ms: i64) {
        self.held.insert(kind.to_string(), until_ms);
    }

    /// Ends a hold early (a task of the kind finished: a slot may be free).
    pub fn release(&mut self, kind: &str) -> bool {
        self.held.remove(kind).is_some()
    }

    /// When the next delayed task or held kind becomes ready.
    pub fn next_due_ms(&self) -> Option<i64> {
        let delayed = self.delayed.keys().next().map(|k| k.0);
        let held = self.held.values().min().copied();
        match (delayed, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queued tasks by (kind, priority).
    pub fn depth(&self) -> BTreeMap<(String, u8), usize> {
        let mut out = BTreeMap::new();
        for e in self.ready.iter().chain(self.delayed.values()) {
            *out.entry((e.kind.clone(), e.priority)).or_default() += 1;
        }
        out
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_submission_order_then_delay() {
        let mut q = Queue::default();
        q.push("a".into(), "k".into(), 1, 0, 0);
        q.push("b".into(), "k".into(), 5, 0, 0);
        q.push("c".into(), "k".into(), 5, 0, 0);
        q.push("d".into(), "k".into(), 9, 100, 0);
        q.push("b".into(), "k".into(), 5, 0, 0); // duplicate ignored
        let order: Vec<String> = std::iter::from_fn(|| q.pop(0)).map(|e| e.id).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!(q.next_due_ms(), Some(100));
        assert_eq!(q.pop(100).map(|e| e.id).as_deref(), Some("d"));
    }

    #[test]
    fn a_held_kind_is_skipped_until_due_and_keeps_its_place() {
        let mut q = Queue::default();
        q.push("a".into(), "slow".into(), 9, 0, 0);
        q.push("b".into(), "fast".into(), 1, 0, 0);
        let a = q.pop(0).unwrap();
        assert_eq!(a.id, "a");
        q.restore(a);
        q.hold("slow", 50);
        assert_eq!(q.next_due_ms(), Some(50));
        assert_eq!(q.pop(10).map(|e| e.id).as_deref(), Some("b"));
        assert_eq!(q.pop(10), None);
        assert_eq!(q.pop(50).map(|e| e.id).as_deref(), Some("a"));
        q.push("c".into(), "slow".into(), 1, 0, 0);
        q.hold("slow", 1_000);
        assert!(q.release("slow"));
        assert_eq!(q.pop(60).map(|e| e.id).as_deref(), Some("c"));
    }
}
