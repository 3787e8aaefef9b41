//! A task's audit trail, kept compactly: one byte arena per task holding, for each event,
//! `lsn u64 | from u8 | to u8 | len u32 | encoded event` (little-endian). Events are decoded
//! only when someone asks for the history, which keeps open fast and memory small.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::task::{EventKind, TaskState, Timestamp, wire};

const ENTRY_HEADER_LEN: usize = 14;

/// `(lsn, from, to, encoded event)`.
type RawEntry<'a> = (u64, Option<TaskState>, Option<TaskState>, &'a [u8]);
const NO_STATE: u8 = 0xFF;
/// First allocation of a history arena, in events the size of the first one: a typical task
/// sees five or six (created, started, progress..., a terminal event).
const HISTORY_EVENTS_INITIAL: usize = 6;
/// Smallest first allocation of a history arena.
const HISTORY_BYTES_INITIAL_MIN: usize = 256;

/// The encoded history of one task.
#[derive(Clone, Debug, Default)]
pub struct History {
    bytes: Vec<u8>,
    count: u32,
}

/// One event of a task's history, decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEvent {
    /// The event's log sequence number.
    pub lsn: u64,
    /// When it happened.
    pub at: Timestamp,
    /// The event kind (`created`, `started`, `progress`, ...).
    pub kind: &'static str,
    /// The state before (None for the first event).
    pub from: Option<TaskState>,
    /// The state after (None once the task was removed).
    pub to: Option<TaskState>,
    /// Who made the change.
    pub actor: Option<String>,
    /// The event's fields.
    pub details: Value,
}

impl History {
    /// Appends one event.
    pub fn push(
        &mut self,
        lsn: u64,
        from: Option<TaskState>,
        to: Option<TaskState>,
        event_bytes: &[u8],
    ) {
        let len =
            u32::try_from(event_bytes.len()).expect("should be bounded by the log's record limit");
        if self.bytes.capacity() == 0 {
            // Most tasks see a handful of events: one allocation up front instead of several
            // regrowths (replaying a million events is otherwise dominated by the allocator).
            self.bytes.reserve(
                HISTORY_BYTES_INITIAL_MIN
                    .max(HISTORY_EVENTS_INITIAL * (ENTRY_HEADER_LEN + event_bytes.len())),
            );
        }
        self.bytes.reserve(ENTRY_HEADER_LEN + event_bytes.len());
        self.bytes.extend_from_slice(&lsn.to_le_bytes());
        self.bytes.push(from.map_or(NO_STATE, wire::v1::state_code));
        self.bytes.push(to.map_or(NO_STATE, wire::v1::state_code));
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(event_bytes);
        self.count += 1;
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when there are no events.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The raw arena (for snapshots).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Rebuilds a history from a snapshot's arena, checking its structure.
    pub fn from_bytes(bytes: Vec<u8>, count: u32) -> Result<Self> {
        let h = History { bytes, count };
        let mut seen = 0u32;
        for entry in h.raw_entries() {
            entry?;
            seen += 1;
        }
        if seen != count {
            return Err(bad(format!(
                "history holds {seen} events, header says {count}"
            )));
        }
        Ok(h)
    }

    /// Frees spare capacity (after a bulk load).
    pub fn shrink(&mut self) {
        // Only when it is worth a reallocation.
        if self.bytes.capacity() - self.bytes.len() > self.bytes.len() / 2 + 64 {
            self.bytes.shrink_to_fit();
        }
    }

    /// Iterates over `(lsn, from, to, event bytes)`.
    fn raw_entries(&self) -> impl Iterator<Item = Result<RawEntry<'_>>> {
        let mut rest = self.bytes.as_slice();
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let Some((header, body)) = rest.split_at_checked(ENTRY_HEADER_LEN) else {
                rest = &[];
                return Some(Err(bad("truncated history entry".into())));
            };
            let mut lsn = [0u8; 8];
            let mut len = [0u8; 4];
            lsn.copy_from_slice(header.get(..8).unwrap_or_default());
            len.copy_from_slice(header.get(10..14).unwrap_or_default());
            let len = u32::from_le_bytes(len) as usize;
            let Some((event, tail)) = body.split_at_checked(len) else {
                rest = &[];
                return Some(Err(bad("history entry longer than its arena".into())));
            };
            rest = tail;
            let state = |b: Option<&u8>| -> Result<Option<TaskState>> {
                match b.copied() {
                    Some(NO_STATE) | None => Ok(None),
                    Some(c) => wire::v1::state_from_code(c).map(Some),
                }
            };
            Some((|| {
                Ok((
                    u64::from_le_bytes(lsn),
                    state(header.get(8))?,
                    state(header.get(9))?,
                    event,
                ))
            })())
        })
    }

    /// The LSN of the last move from pending to running (the current claim), if any.
    pub fn last_start_lsn(&self) -> Option<u64> {
        self.raw_entries()
            .filter_map(|e| e.ok())
            .filter(|(_, from, to, _)| {
                *from == Some(TaskState::Pending) && *to == Some(TaskState::Running)
            })
            .map(|(lsn, ..)| lsn)
            .last()
    }

    /// Decodes every event.
    pub fn events(&self) -> Result<Vec<HistoryEvent>> {
        let mut out = Vec::with_capacity(self.len());
        for entry in self.raw_entries() {
            let (lsn, from, to, bytes) = entry?;
            let event = wire::decode_event(bytes)?;
            out.push(HistoryEvent {
                lsn,
                at: event.at,
                kind: event.kind.name(),
                from,
                to,
                actor: event.actor.clone(),
                details: details(&event.kind),
            });
        }
        Ok(out)
    }
}

/// The event's own fields as JSON, without the `kind` tag.
fn details(kind: &EventKind) -> Value {
    match serde_json::to_value(kind) {
        Ok(Value::Object(mut map)) => {
            map.shift_remove("kind");
            Value::Object(map)
        }
        Ok(_) | Err(_) => Value::Object(Default::default()),
    }
}

fn bad(reason: String) -> Error {
    Error::Codec {
        what: "task history".into(),
        reason,
    }
}
