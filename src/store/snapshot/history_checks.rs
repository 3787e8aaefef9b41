//! Checking a snapshot's histories on a second thread while its tasks section is read on.
//!
//! What `verify` pays for a snapshot beyond an open is mostly this check: every history's
//! blocks decompressed and its entries walked, where an open reads none of them. The records
//! name each history as they are read, so the checks can follow them in file order on another
//! core (docs/benchmarks.md, "Histories checked on a second thread").

use std::sync::mpsc::{SyncSender, sync_channel};

use crate::error::Result;

/// Histories handed over at a time: one channel operation per batch, not per task.
const BATCH_LEN: usize = 512;

/// Batches in flight before the reader waits for the checker: bounds the memory to a few
/// thousand histories' places and ids, whatever the snapshot's size.
const BATCHES_IN_FLIGHT: usize = 4;

/// Runs `read`, which hands each history it meets (its task's id, and `I`: where it is) to
/// the closure it is given; each is checked with `check` on a second thread (here if no
/// thread can be started). The result is the read's error if it failed, else the first
/// history's error in the order handed over, else the read's value: the precedence of a read
/// followed by a check of every history (`snapshot::read_checked`). A failed check does not
/// stop the read; the damage is reported when it ends.
pub fn beside<I: Send, T>(
    check: impl Fn(&str, I) -> Result<()> + Sync,
    read: impl FnOnce(&mut dyn FnMut(&str, I)) -> Result<T>,
) -> Result<T> {
    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel::<Batch<I>>(BATCHES_IN_FLIGHT);
        let check = &check;
        let checker = std::thread::Builder::new()
            .name("tasklog-history-check".into())
            .spawn_scoped(scope, move || -> Result<()> {
                // Returning drops the receiver: the reader's sends then fail and it stops
                // handing histories over.
                for batch in receiver {
                    let mut id_start = 0;
                    for (id_end, item) in batch.items {
                        check(batch.ids.get(id_start..id_end).unwrap_or_default(), item)?;
                        id_start = id_end;
                    }
                }
                Ok(())
            });
        let Ok(checker) = checker else {
            let mut first = Ok(());
            let read = read(&mut |id, item| {
                if first.is_ok() {
                    first = check(id, item);
                }
            });
            return read.and_then(|value| first.map(|()| value));
        };
        let mut handing = Handing {
            sender: Some(sender),
            batch: Batch::default(),
        };
        let read = read(&mut |id, item| handing.push(id, item));
        handing.flush();
        drop(handing);
        // A panic there is one here, as if the check had run here.
        let checked = checker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        read.and_then(|value| checked.map(|()| value))
    })
}

/// Histories handed over together: their tasks' ids one after another in `ids` (one
/// allocation per batch, not one per task), and each history with where its id ends.
struct Batch<I> {
    ids: String,
    items: Vec<(usize, I)>,
}

impl<I> Default for Batch<I> {
    fn default() -> Self {
        Batch {
            ids: String::with_capacity(BATCH_LEN * 16),
            items: Vec::with_capacity(BATCH_LEN),
        }
    }
}

/// The reader's side: the batch being filled, and the channel (gone once the checker stopped).
struct Handing<I> {
    sender: Option<SyncSender<Batch<I>>>,
    batch: Batch<I>,
}

impl<I> Handing<I> {
    fn push(&mut self, id: &str, item: I) {
        if self.sender.is_none() {
            return;
        }
        self.batch.ids.push_str(id);
        self.batch.items.push((self.batch.ids.len(), item));
        if self.batch.items.len() == BATCH_LEN {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if batch.items.is_empty() {
            return;
        }
        if let Some(sender) = &self.sender
            && sender.send(batch).is_err()
        {
            // The checker found damage and stopped: nothing more to hand over.
            self.sender = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::error::Error;

    fn bad(reason: &str) -> Error {
        Error::corrupt(Path::new("s"), None, None, reason.to_string())
    }

    /// Reads `n` histories, the ones in `damaged` failing their check.
    fn run(n: u64, damaged: &[u64], read_fails: bool) -> (Result<u64>, Vec<u64>) {
        let checked = std::sync::Mutex::new(Vec::new());
        let result = beside(
            |id: &str, lsn: u64| {
                assert_eq!(id, format!("t{lsn}"), "each history comes with its own id");
                checked.lock().unwrap().push(lsn);
                if damaged.contains(&lsn) {
                    return Err(bad(&format!("history {lsn}")));
                }
                Ok(())
            },
            |hand_over| {
                for lsn in 0..n {
                    hand_over(&format!("t{lsn}"), lsn);
                }
                if read_fails {
                    return Err(bad("the read"));
                }
                Ok(n)
            },
        );
        (result, checked.into_inner().unwrap())
    }

    #[test]
    fn every_history_is_checked_in_order() {
        let n = BATCH_LEN as u64 * 3 + 7;
        let (result, checked) = run(n, &[], false);
        assert_eq!(result.unwrap(), n);
        assert_eq!(
            checked,
            (0..n).collect::<Vec<_>>(),
            "the partial last batch too"
        );
    }

    #[test]
    fn the_first_damaged_history_is_reported_and_checks_stop() {
        let n = BATCH_LEN as u64 * 20;
        let (result, checked) = run(n, &[700, 900], false);
        let e = result.unwrap_err().to_string();
        assert!(e.contains("history 700"), "{e}");
        assert_eq!(
            checked.last(),
            Some(&700),
            "nothing is checked after the damage"
        );
    }

    #[test]
    fn a_failed_read_takes_precedence_over_a_damaged_history() {
        let (result, _) = run(10, &[3], true);
        let e = result.unwrap_err().to_string();
        assert!(e.contains("the read"), "{e}");
    }
}
