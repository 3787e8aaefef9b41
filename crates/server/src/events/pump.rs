//! One SSE subscriber's thread: reads its own store subscription (a blocking API) and hands
//! each event, formatted, to its response stream through a bounded channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::sse::Event;
use tasklog::Store;
use tasklog::store::Subscription;
use tokio::sync::mpsc;

use super::STALL_MAX;
use super::hub::{Shared, SubscriberSlot};
use super::narrate::Narrator;
use crate::error::Problem;

/// How long the thread waits for an event before it checks whether to stop.
const POLL: Duration = Duration::from_millis(200);

/// One subscriber's thread: reads its subscription and feeds its response.
pub(super) struct Pump {
    pub(super) store: Store,
    pub(super) hub: Arc<Shared>,
    pub(super) sub: Subscription,
    pub(super) tx: mpsc::Sender<Event>,
    /// End after this LSN (`follow=false`).
    pub(super) until: Option<u64>,
    /// Held until the thread ends.
    pub(super) _slot: SubscriberSlot,
}

impl Pump {
    pub(super) fn run(mut self) {
        let mut narrator = Narrator::new(self.store.clone());
        let wait = if self.until.is_some() {
            Duration::ZERO
        } else {
            POLL
        };
        while !self.hub.is_closed() && !self.tx.is_closed() {
            match self.sub.next_timeout(wait) {
                Ok(Some(c)) => {
                    if self.until.is_some_and(|u| c.lsn > u) {
                        return;
                    }
                    let data = narrator.describe(&c);
                    let event = Event::default()
                        .id(c.lsn.to_string())
                        .event(data.kind.as_str());
                    let event = match serde_json::to_string(&data) {
                        Ok(json) => event.data(json),
                        Err(e) => {
                            tracing::warn!(lsn = c.lsn, error = %e, "an event could not be encoded");
                            return;
                        }
                    };
                    if !self.send(event) {
                        return;
                    }
                }
                // Caught up, when not following.
                Ok(None) if self.until.is_some() => return,
                Ok(None) => {}
                Err(tasklog::Error::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "an event stream stopped");
                    let problem = Problem::from(e);
                    if let Ok(json) = serde_json::to_string(&problem) {
                        self.send(Event::default().event("problem").data(json));
                    }
                    return;
                }
            }
        }
    }

    /// Hands `event` to the response. False when the stream is over (client gone, shutdown,
    /// or a client that took nothing for [`STALL_MAX`]).
    fn send(&self, event: Event) -> bool {
        let mut event = event;
        let mut stalled_since: Option<Instant> = None;
        loop {
            match self.tx.try_send(event) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    event = back;
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if self.hub.is_closed() {
                        return false;
                    }
                    if since.elapsed() >= STALL_MAX {
                        tracing::info!(
                            "an event subscriber read nothing for a minute; disconnected"
                        );
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
