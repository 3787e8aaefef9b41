//! The hub: one store subscription, followed by one thread, that keeps the ready queue up and
//! wakes long-polling claimers whenever a task may have become claimable; and the count of SSE
//! subscribers. Each SSE subscriber follows its own store subscription (see `super::pump`),
//! so a slow one never holds the others back and each gets every event once, in LSN order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tasklog::store::{Committed, Filter, Query, Subscription};
use tasklog::task::{EventKind, Timestamp};
use tasklog::{Store, TaskState};
use tokio::sync::watch;

use super::ready::Ready;

/// How long the hub's thread waits for an event before it looks at the closed flag again.
const POLL: Duration = Duration::from_millis(200);

/// One store subscription shared by every long-polling worker, and the SSE subscriber count.
pub struct Hub {
    shared: Arc<Shared>,
}

/// What the hub's thread, the handlers and the SSE threads share.
pub(crate) struct Shared {
    closed: AtomicBool,
    /// Becomes true at close.
    closed_tx: watch::Sender<bool>,
    /// Bumped whenever a task may have become claimable.
    wake_tx: watch::Sender<u64>,
    /// The LSN of the last event the ready queue reflects.
    position_tx: watch::Sender<u64>,
    ready: Mutex<Ready>,
    subscribers: AtomicUsize,
}

impl Shared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn wake(&self) {
        self.wake_tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn ready(&self) -> MutexGuard<'_, Ready> {
        // The queue is a hint (see `ready`): a panic while it was held leaves nothing unsafe.
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A place among the SSE subscribers, given back when dropped.
pub(crate) struct SubscriberSlot {
    shared: Arc<Shared>,
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        self.shared.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hub {
    /// Starts the hub over `store`: queues the pending tasks and follows committed events on
    /// a thread of its own, which ends at [`Hub::close`], when the hub is dropped, or when the
    /// store closes.
    pub fn start(store: &Store) -> Arc<Hub> {
        let (closed_tx, _) = watch::channel(false);
        let (wake_tx, _) = watch::channel(0);
        let (position_tx, _) = watch::channel(store.last_lsn());
        let shared = Arc::new(Shared {
            closed: AtomicBool::new(false),
            closed_tx,
            wake_tx,
            position_tx,
            ready: Mutex::new(Ready::default()),
            subscribers: AtomicUsize::new(0),
        });
        // Subscribe before reading the pending tasks, so that nothing committed in between
        // is missed (a task seen twice is queued once).
        match store.subscribe(store.last_lsn() + 1) {
            Ok(sub) => {
                refill(&shared, store);
                let (s, st) = (shared.clone(), store.clone());
                let spawned = std::thread::Builder::new()
                    .name("tasklog-hub".into())
                    .spawn(move || follow(&s, &st, sub));
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "could not start the event hub; long-polling claims wait for their whole wait");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the event hub could not subscribe to the store");
            }
        }
        Arc::new(Hub { shared })
    }

    /// Wakes every long-polling claim to look again (a kind was resumed or its limits
    /// changed).
    pub fn wake_claimers(&self) {
        self.shared.wake();
    }

    /// Ends every SSE stream and long poll (at shutdown).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.closed_tx.send_replace(true);
        self.shared.wake();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Receives a change whenever a task may have become claimable (and at close).
    pub fn wake_receiver(&self) -> watch::Receiver<u64> {
        self.shared.wake_tx.subscribe()
    }

    /// Becomes true at close.
    pub fn closed_receiver(&self) -> watch::Receiver<bool> {
        self.shared.closed_tx.subscribe()
    }

    /// The LSN of the last event the ready queue reflects.
    pub fn position(&self) -> u64 {
        *self.shared.position_tx.borrow()
    }

    /// Waits (at most `timeout`) until the ready queue reflects every event up to `lsn`, so
    /// that a claim sees what was committed before it. False on timeout or once closed.
    pub async fn caught_up(&self, lsn: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.position_tx.subscribe();
        let reached = async {
            loop {
                if *rx.borrow_and_update() >= lsn {
                    return true;
                }
                if self.is_closed() || rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, reached)
            .await
            .unwrap_or(false)
    }

    /// The ready queue (locked; hold it briefly and never across a store call).
    pub(crate) fn ready(&self) -> MutexGuard<'_, Ready> {
        self.shared.ready()
    }

    /// Number of tasks in the ready queue (pending, claimable now or later), for metrics.
    pub fn queued(&self) -> usize {
        self.shared.ready().queued()
    }

    /// Number of SSE subscribers now.
    pub fn sse_subscribers(&self) -> usize {
        self.shared.subscribers.load(Ordering::Acquire)
    }

    /// Takes one of `max` SSE subscriber places, if one is free.
    pub(crate) fn take_subscriber_slot(&self, max: usize) -> Option<SubscriberSlot> {
        let taken =
            self.shared
                .subscribers
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
        taken.ok().map(|_| SubscriberSlot {
            shared: self.shared.clone(),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The thread holds a store handle: let it go.
        self.close();
    }
}

/// Rebuilds the ready queue from the store's pending tasks.
fn refill(shared: &Shared, store: &Store) {
    let q = Query {
        filter: Filter {
            states: vec![TaskState::Pending],
            ..Filter::default()
        },
        ..Query::default()
    };
    match store.list(&q) {
        Ok(page) => {
            let now = Timestamp::now().0;
            let mut ready = shared.ready();
            ready.clear();
            for task in &page.tasks {
                ready.upsert(task, now);
            }
            drop(ready);
            shared.wake();
        }
        Err(e) => tracing::warn!(error = %e, "could not read the pending tasks"),
    }
}

/// The hub's thread: follows committed events until closed.
fn follow(shared: &Shared, store: &Store, mut sub: Subscription) {
    while !shared.is_closed() {
        // Every event up to here is in the subscription's channel already (published under
        // the state lock before the store's applied LSN moves past it).
        let applied = store.last_lsn();
        match sub.next_timeout(POLL) {
            Ok(Some(c)) => {
                on_event(shared, store, &c);
                shared.position_tx.send_replace(c.lsn);
            }
            Ok(None) => {
                // Nothing left up to `applied`: records that are not events (a session's
                // end) are passed too.
                shared.position_tx.send_if_modified(|p| {
                    let behind = *p < applied;
                    if behind {
                        *p = applied;
                    }
                    behind
                });
            }
            Err(tasklog::Error::Closed) => return,
            Err(e) => {
                // Fell behind a compaction, or the log failed: start over from the store.
                tracing::warn!(error = %e, "the event hub lost its place; reloading the pending tasks");
                match store.subscribe(store.last_lsn() + 1) {
                    Ok(s) => sub = s,
                    Err(e) => {
                        tracing::warn!(error = %e, "the event hub stopped");
                        return;
                    }
                }
                refill(shared, store);
                shared.position_tx.send_replace(store.last_lsn());
            }
        }
    }
}

/// Keeps the ready queue up after one event; wakes claimers when a task was queued.
fn on_event(shared: &Shared, store: &Store, c: &Committed) {
    let id = &c.event.task_id;
    match &c.event.kind {
        EventKind::Started { .. } | EventKind::Removed { .. } => shared.ready().remove(id),
        EventKind::Completed { .. } | EventKind::Failed { .. } | EventKind::Cancelled { .. } => {
            shared.ready().remove(id);
            // A task that ends frees a slot of its kind: a claim held back by a concurrency
            // limit may succeed now.
            if store.has_kind_rules() {
                shared.wake();
            }
        }
        EventKind::Heartbeat { .. }
        | EventKind::Progress { .. }
        | EventKind::Checkpoint { .. }
        | EventKind::Output { .. } => {}
        // Created, retried, requeued, interrupted, imported, updated (priority, kind or
        // not_before may have changed), and kinds to come: as the store has the task now.
        _ => match store.get(id) {
            Ok(task) => {
                if shared.ready().upsert(&task, Timestamp::now().0) {
                    shared.wake();
                }
            }
            Err(tasklog::Error::NotFound { .. }) => shared.ready().remove(id),
            Err(e) => tracing::warn!(task = %id, error = %e, "the event hub could not read a task"),
        },
    }
}
