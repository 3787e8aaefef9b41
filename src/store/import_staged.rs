//! A large batch (an import) written to a staging segment beside the log and made live by one
//! rename (`wal::Staging`; docs/design.md, "Bounded atomic import").
//!
//! The mutations are validated a chunk at a time against the state plus the batch's overlay
//! (the same checks as [`Store::write_batch`]); each chunk's events are encoded into the
//! staging segment and dropped, and the overlay keeps only tasks that later mutations touch
//! again. Nothing touches the state or the log until the whole batch is staged: a refusal,
//! or an error while staging, deletes the staging file and leaves the store as it was. After
//! the rename the new segment is read back in order and each event installed (the batch
//! path's last step) and published to subscribers; a failure then poisons the store (the log
//! holds the batch; reopening rebuilds the state from it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::HashMap;

use super::commit::Staged;
use super::mutation::{Change, Mutation};
use super::{Store, install_staged, record, subscribe, unique};
use crate::error::{Error, Result};
use crate::task::{EventKind, Timestamp};

/// Mutations validated, encoded and written per chunk.
pub const IMPORT_CHUNK_MUTATIONS: usize = 4096;
/// Batches with fewer mutations than this go through the ordinary batch path instead: their
/// memory is bounded by one chunk anyway, and staging costs a segment of its own (every
/// staged import seals the active segment), which a stream of small HTTP imports would pay
/// for with many tiny segments.
pub const IMPORT_STAGED_MIN_MUTATIONS: usize = IMPORT_CHUNK_MUTATIONS;

/// Test overrides of the two constants above (0: the constant).
static CHUNK_OVERRIDE: AtomicUsize = AtomicUsize::new(0);
static MIN_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

/// For tests: stage batches of at least `min` mutations, `chunk` mutations at a time (0 resets
/// either to its default). Process-wide.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub fn set_staging_for_tests(min: usize, chunk: usize) {
    MIN_OVERRIDE.store(min, Ordering::Relaxed);
    CHUNK_OVERRIDE.store(chunk, Ordering::Relaxed);
}

fn knob(over: &AtomicUsize, default: usize) -> usize {
    match over.load(Ordering::Relaxed) {
        0 => default,
        n => n,
    }
}

/// For the mutations that a later one touches the same task as, in order: each one's index
/// and the index of the last mutation touching that task (a chunk keeps a task in the overlay
/// only while a later mutation still needs it). Built in one pass from the end with the ids
/// borrowed, read in one pass from the front (it was a map of copied ids, each mutation looked
/// up in it: 7 % of an import with 1,000,000 history events); empty when no task is touched
/// twice.
pub(crate) struct LastTouches {
    /// `(index, last)` pairs, in descending index order (popped from the back).
    pairs: Vec<(usize, usize)>,
}

impl LastTouches {
    pub(crate) fn of(mutations: &[Mutation]) -> LastTouches {
        let mut last: HashMap<&str, usize> = HashMap::default();
        let mut pairs = Vec::new();
        for (i, m) in mutations.iter().enumerate().rev() {
            let l = *last.entry(m.task_id.as_str()).or_insert(i);
            if l > i {
                pairs.push((i, l));
            }
        }
        LastTouches { pairs }
    }

    /// The last touch of mutation `i`'s task when it is later than `i`. Asked for every `i` in
    /// ascending order.
    pub(crate) fn next(&mut self, i: usize) -> Option<usize> {
        match self.pairs.last() {
            Some(&(at, last)) if at == i => {
                self.pairs.pop();
                Some(last)
            }
            _ => None,
        }
    }
}

impl Store {
    /// Applies mutations atomically like [`Store::write_batch`], through a staging segment
    /// when the batch is large and the log is the local one (see the module docs). Returns the
    /// last LSN written (0 when nothing was), durable whatever the durability mode.
    pub(crate) fn write_staged(&self, mutations: Vec<Mutation>) -> Result<u64> {
        let min = knob(&MIN_OVERRIDE, IMPORT_STAGED_MIN_MUTATIONS);
        // NOTE: a submit's id and idempotency checks may need tasks this path drops from the
        // overlay; imports never submit.
        let submits = mutations
            .iter()
            .any(|m| matches!(m.change, Change::Submit(_)));
        let local = self.inner.log.local_wal().is_some();
        if !local || mutations.len() < min || submits {
            return self.write_batch(mutations);
        }
        let mut later = LastTouches::of(&mutations);
        self.write_staged_from(|sink| {
            for (i, m) in mutations.into_iter().enumerate() {
                sink(m, later.next(i))?;
            }
            Ok(())
        })
    }

    /// Writes the mutations `feed` hands to its sink through a staging segment, atomically:
    /// all of them or, if `feed` or the sink fails, none (the staging file is deleted and the
    /// store is as it was, still writable). `feed` runs under the state's write lock, so it
    /// should be quick to produce its mutations (a validated file read again, not a slow
    /// pipe). With each mutation, `feed` says the index (counted from 0 over everything fed)
    /// of the last mutation that touches the same task, when a later one does: the overlay
    /// keeps a task only while it is touched again. Returns the last LSN written (0 when
    /// nothing was). Only on the local log; imports never submit (a submit's checks may need
    /// tasks this path drops from the overlay).
    pub(crate) fn write_staged_from(
        &self,
        feed: impl FnOnce(&mut dyn FnMut(Mutation, Option<usize>) -> Result<()>) -> Result<()>,
    ) -> Result<u64> {
        let Some(wal) = self.inner.log.local_wal() else {
            return Err(Error::InvalidInput {
                at: None,
                reason: "a staged write needs the store's local log".into(),
            });
        };
        self.check_writable()?;
        let chunk = knob(&CHUNK_OVERRIDE, IMPORT_CHUNK_MUTATIONS);
        let now = Timestamp::now();
        let mut st = self.inner.state.write();
        let base = wal.next_lsn();
        // NOTE: no poisoning before the commit: until the rename the log is untouched (the
        // staging file is not part of it), so a failed create or write changes nothing.
        let mut staging = wal.begin_staging()?;
        let mut staged = Staged::chunked(chunk);
        let mut keyed: Vec<String> = Vec::new();
        let keys_built = self.inner.unique.lock().is_built();
        let mut buf = Vec::new();
        // For each event of the current chunk, the index of the last mutation touching its
        // task when a later one does (as the feed said).
        let mut later: Vec<Option<usize>> = Vec::with_capacity(chunk);
        let mut fed = 0usize;
        // Tasks the batch creates under ids the state has not seen (at most: a task created,
        // removed and created again counts twice; one re-imported after its history too): the
        // state makes room for them once, before installing, instead of rehashing its id table
        // as it doubles (3 % of an import of 1,000,000 tasks).
        let mut new_ids = 0usize;
        let mut flush = |st: &super::state::State,
                         staged: &mut Staged,
                         later: &[Option<usize>],
                         i: usize|
         -> Result<()> {
            self.admit(st, staged, now)?;
            new_ids += staged
                .events
                .iter()
                .zip(&staged.event_slots)
                .filter(|(e, slot)| {
                    slot.is_none()
                        && matches!(
                            e.kind,
                            EventKind::Created { .. } | EventKind::Imported { .. }
                        )
                })
                .count();
            let touched_later = |k: usize| later.get(k).copied().flatten().is_some_and(|l| l > i);
            let events = staged.take_chunk(st, base, touched_later);
            for e in &events {
                buf.clear();
                record::encode_event_into(&mut buf, e)?;
                // NOTE: too large an event is the caller's input: refused before the log
                // changes, so the store stays writable.
                staging.append(&buf)?;
                if keys_built && unique::UniqueIndex::may_key(e) {
                    keyed.push(e.task_id.clone());
                }
            }
            Ok(())
        };
        let fed_all = feed(&mut |mut m, last| {
            if matches!(m.change, Change::Submit(_)) {
                return Err(Error::InvalidInput {
                    at: Some(m.task_id),
                    reason: "a staged write takes no submit".into(),
                });
            }
            let i = fed;
            fed += 1;
            staged.stage(&st, &mut m, now, self.inner.session, base)?;
            // A staged mutation (never a submit here) is exactly one event.
            later.push(last);
            debug_assert_eq!(later.len(), staged.events.len(), "one event per mutation");
            if staged.events.len() >= chunk {
                flush(&st, &mut staged, &later, i)?;
                // `take_chunk` asks only about the tasks of the chunk it takes, and each of
                // those was entered here when it was staged: the next chunk needs none of these.
                later.clear();
            }
            Ok(())
        })
        // The last chunk: no mutation follows, so every task of it leaves the overlay.
        .and_then(|()| flush(&st, &mut staged, &later, usize::MAX));
        if let Err(e) = fed_all {
            // A refusal reveals the state it was judged against: answer only once that
            // state is durable (as the batch path does). Dropping `staging` deletes it.
            let applied = st.applied_lsn;
            drop(st);
            drop(staging);
            self.settle(applied)?;
            return Err(e);
        }
        drop(staged);
        drop(later);
        let last = staging.commit().map_err(|e| self.poison_unless_input(e))?;
        if last < base {
            return Ok(0);
        }
        st.reserve(new_ids);
        self.install_staged_segment(&mut st, base, last)?;
        self.inner.unique.lock().after_commit(&st, &keyed);
        let snapshot_due = self.snapshot_due(&st);
        drop(st);
        if snapshot_due {
            self.request_snapshot();
        }
        Ok(last)
    }

    /// True when the store writes its own log (not a caller-supplied one): staged writes
    /// ([`Store::write_staged_from`]) need it.
    pub(crate) fn has_local_log(&self) -> bool {
        self.inner.log.local_wal().is_some()
    }

    /// [`Store::write_staged`] for tests that measure it (`tests/import_staged_memory.rs`).
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn write_staged_for_tests(&self, mutations: Vec<Mutation>) -> Result<u64> {
        self.write_staged(mutations)
    }

    /// Reads the committed staging segment back (`base..=last`) and installs each event in
    /// the state in LSN order, publishing it to subscribers. The log already holds these
    /// events: if memory cannot follow, the store is poisoned rather than diverge from it.
    fn install_staged_segment(
        &self,
        st: &mut super::state::State,
        base: u64,
        last: u64,
    ) -> Result<()> {
        let mut subscribers = self.inner.subscribers.lock();
        let mut next = base;
        self.inner
            .log
            .replay(base, &mut |lsn, bytes| {
                if lsn > last {
                    return Ok(());
                }
                // IMPORTANT: contiguity, as at recovery: an event skipped here would be in the
                // log but missing from memory.
                assert_eq!(
                    lsn, next,
                    "a committed staging segment should replay contiguously"
                );
                next += 1;
                let super::record::Record::Event(mut event) = record::decode(lsn, bytes)? else {
                    return Err(Error::corrupt(
                        "staging",
                        None,
                        Some(lsn),
                        "a staged record is not an event",
                    ));
                };
                let published = (!subscribers.is_empty()).then(|| event.clone());
                install_staged(st, lsn, &mut event, record::event_body(bytes), None)?;
                st.mark_applied(lsn, bytes.len());
                if let Some(event) = published {
                    let c = Arc::new(subscribe::Committed { lsn, event });
                    subscribers.retain(|tx| tx.send(c.clone()).is_ok());
                }
                Ok(())
            })
            .map_err(|e| self.poison(e))?;
        if next != last + 1 {
            return Err(self.poison(Error::corrupt(
                "staging",
                None,
                Some(next),
                format!(
                    "the committed staging segment ended at LSN {} instead of {last}",
                    next - 1
                ),
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::LastTouches;
    use crate::store::mutation::{Change, Mutation};

    #[test]
    fn last_touches_name_the_last_later_mutation_of_each_task() {
        let ids = ["a", "b", "a", "c", "b", "a"];
        let mutations: Vec<Mutation> = ids
            .iter()
            .map(|id| Mutation::new(*id, Change::Retry))
            .collect();
        let mut later = LastTouches::of(&mutations);
        let got: Vec<Option<usize>> = (0..ids.len()).map(|i| later.next(i)).collect();
        assert_eq!(got, [Some(5), Some(4), Some(5), None, None, None]);
        assert!(LastTouches::of(&mutations[3..4]).pairs.is_empty());
    }
}
