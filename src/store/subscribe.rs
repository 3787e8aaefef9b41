//! Subscriptions: every committed event from an LSN onward, first caught up from the log, then
//! live. Events are delivered in LSN order, each once, and only once durable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::log::Log;
use super::record::{self, Record};
use crate::error::{Error, Result};
use crate::task::Event;

/// A committed event, as delivered to subscribers.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// Its LSN.
    pub lsn: u64,
    /// The event.
    pub event: Event,
}

/// Live feed handed to subscribers by the commit path, in LSN order.
pub type Feed = crossbeam_channel::Sender<Arc<Committed>>;

const CATCH_UP_CHUNK: usize = 1024;

/// A subscription. Iterate it, or poll with [`Subscription::next_timeout`].
///
/// It first catches up from the LSN asked for, then follows live commits; a consumer keeps
/// its own position (the last LSN it handled) and subscribes from the next one.
///
/// ```
/// use std::time::Duration;
/// use tasklog::{NewTask, Store};
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let task = store.submit(NewTask::new("resize"))?;
/// let mut feed = store.subscribe(1)?;
/// let first = feed.next_timeout(Duration::from_secs(1))?.expect("the submit");
/// assert_eq!(first.event.task_id, task.id);
/// # Ok(())
/// # }
/// ```
pub struct Subscription {
    log: Arc<dyn Log>,
    /// The first LSN wanted: live events below it are skipped (a subscription may start
    /// beyond the current end of the log).
    from: u64,
    next_catch_up: u64,
    catch_up_until: u64,
    buffered: VecDeque<Committed>,
    live: Receiver<Arc<Committed>>,
}

impl Subscription {
    pub(crate) fn new(
        log: Arc<dyn Log>,
        from: u64,
        applied: u64,
        live: Receiver<Arc<Committed>>,
    ) -> Result<Self> {
        let first = log.first_lsn();
        if from < first && from <= applied {
            return Err(Error::InvalidInput {
                at: Some("from".into()),
                reason: format!("LSN {from} was compacted away; the log starts at LSN {first}"),
            });
        }
        Ok(Subscription {
            log,
            from,
            next_catch_up: from.max(1),
            catch_up_until: applied,
            buffered: VecDeque::new(),
            live,
        })
    }

    /// The next event, waiting at most `timeout` for a live one. `Ok(None)` on timeout.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Committed>> {
        if let Some(c) = self.catch_up()? {
            return Ok(Some(c));
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.live.recv_timeout(left) {
                // Committed before the LSN asked for: not part of this subscription.
                Ok(c) if c.lsn < self.from => continue,
                Ok(c) => {
                    // Published at apply time; delivered only once durable.
                    self.log.wait_durable(c.lsn)?;
                    return Ok(Some((*c).clone()));
                }
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(Error::Closed),
            }
        }
    }

    fn catch_up(&mut self) -> Result<Option<Committed>> {
        while self.buffered.is_empty() && self.next_catch_up <= self.catch_up_until {
            self.log.wait_durable(self.catch_up_until)?;
            let mut chunk = Vec::new();
            let until = self.catch_up_until;
            let mut last = self.next_catch_up.saturating_sub(1);
            let mut gap_at = None;
            let mut stopped_early = false;
            let mut f = |lsn: u64, bytes: &[u8]| -> Result<()> {
                if lsn != last + 1 {
                    // The log no longer holds what this subscriber has yet to read (a snapshot
                    // compacted it meanwhile): the log skips to what it still has.
                    gap_at = Some(lsn);
                    stopped_early = true;
                    return Err(Error::Closed);
                }
                if lsn > until || chunk.len() >= CATCH_UP_CHUNK {
                    // Stop the replay; told apart from a real `Closed` by the flag.
                    stopped_early = true;
                    return Err(Error::Closed);
                }
                last = lsn;
                if let Record::Event(event) = record::decode(lsn, bytes)? {
                    chunk.push(Committed { lsn, event });
                }
                Ok(())
            };
            match self.log.replay(self.next_catch_up, &mut f) {
                Ok(_) => {}
                Err(Error::Closed) if stopped_early => {}
                Err(e) => return Err(e),
            }
            // Events read before the hole are delivered first; the next read reports it.
            if let Some(found) = gap_at
                && chunk.is_empty()
            {
                return Err(Error::InvalidInput {
                    at: Some("from".into()),
                    reason: format!(
                        "LSNs {}..{found} were compacted away before this subscription read them",
                        last + 1
                    ),
                });
            }
            if last < self.next_catch_up {
                // Nothing more in the log up to `until`.
                self.next_catch_up = until + 1;
            } else {
                self.next_catch_up = last + 1;
            }
            self.buffered.extend(chunk);
        }
        Ok(self.buffered.pop_front())
    }
}

impl Iterator for Subscription {
    type Item = Result<Committed>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(c)) => return Some(Ok(c)),
                Ok(None) => continue,
                Err(Error::Closed) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The catch-up's bookkeeping against a log that holds less than it claims (a `Log` other
    //! than the local WAL may stand in, see `store::log`): the local WAL cannot be brought to
    //! hand back a hole after its first record, nor nothing at all below `applied`.

    use std::collections::BTreeMap;

    use super::*;
    use crate::task::EventKind;
    use crate::task::time::Timestamp;
    use crate::wal::{Lsn, Ticket, TruncateReport, WalStats};

    /// Holds fixed records; every record is durable.
    struct FixedLog(BTreeMap<Lsn, Vec<u8>>);

    impl Log for FixedLog {
        fn submit(&self, _: &[&[u8]]) -> Result<Ticket> {
            Err(Error::ReadOnly)
        }
        fn wait_durable(&self, _: Lsn) -> Result<()> {
            Ok(())
        }
        fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64> {
            let mut n = 0;
            for (lsn, bytes) in self.0.range(from..) {
                f(*lsn, bytes)?;
                n += 1;
            }
            Ok(n)
        }
        fn truncate_before(&self, _: Lsn) -> Result<TruncateReport> {
            Err(Error::ReadOnly)
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
        fn next_lsn(&self) -> Lsn {
            self.0.keys().next_back().map_or(1, |l| l + 1)
        }
        fn durable_lsn(&self) -> Lsn {
            self.next_lsn() - 1
        }
        fn first_lsn(&self) -> Lsn {
            self.0.keys().next().copied().unwrap_or(1)
        }
        fn stats(&self) -> WalStats {
            WalStats::default()
        }
        fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    fn event_record(task_id: &str) -> Vec<u8> {
        let event = Event {
            task_id: task_id.into(),
            at: Timestamp::now(),
            actor: None,
            kind: EventKind::Heartbeat {
                owner: "w".into(),
                lease_expires_at: Timestamp::now(),
            },
        };
        record::encode_event(&event).expect("a heartbeat should encode")
    }

    /// A subscription from LSN 1, and its live feed: kept connected and empty, so that
    /// `Ok(None)` means "nothing more".
    fn subscription(records: &[(Lsn, Vec<u8>)], applied: Lsn) -> (Subscription, Feed) {
        let log = Arc::new(FixedLog(records.iter().cloned().collect()));
        let (tx, rx) = crossbeam_channel::unbounded();
        let sub = Subscription::new(log, 1, applied, rx).expect("LSN 1 is held");
        (sub, tx)
    }

    /// One event, then a hole up to `applied`: the event is delivered and the next read reports
    /// the hole; the subscription does not take the event as the end of its catch-up.
    #[test]
    fn a_hole_after_the_first_event_is_reported_on_the_next_read() {
        let (mut sub, _feed) = subscription(&[(1, event_record("a")), (5, event_record("b"))], 5);
        let first = sub.next_timeout(Duration::from_millis(10));
        assert_eq!(
            first.expect("the event before the hole").map(|c| c.lsn),
            Some(1)
        );
        match sub.next_timeout(Duration::from_millis(10)) {
            Err(Error::InvalidInput { reason, .. }) => {
                assert!(reason.contains("LSNs 2..5"), "{reason}");
            }
            other => panic!("the hole after LSN 1 was not reported: {other:?}"),
        }
    }

    /// A log that holds nothing from the subscription's start up to `applied`: the catch-up
    /// ends (it does not read the same nothing forever) and the subscription goes live.
    #[test]
    fn a_catch_up_that_finds_nothing_ends() {
        let (tx, rx) = std::sync::mpsc::channel();
        // In a thread: a catch-up that never ends fails the test instead of hanging it.
        std::thread::spawn(move || {
            let (mut sub, _feed) = subscription(&[], 3);
            let got = sub.next_timeout(Duration::from_millis(10));
            tx.send(got.map(|c| c.map(|c| c.lsn))).ok();
        });
        let got = rx.recv_timeout(Duration::from_secs(10));
        assert!(matches!(got, Ok(Ok(None))), "{got:?}");
    }
}
