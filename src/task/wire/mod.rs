//! The persisted form of events. Domain types change; these do not. Each persisted version is a
//! frozen set of DTOs (`v1`, later `v2`, ...) converted to and from the domain types, so that a
//! log written today stays readable after the events change. Rules (see docs/format.md):
//! add enum variants only at the end, never reorder or remove fields, never use
//! `serde_json::Value`, untagged, flatten or skip in a DTO (JSON values are stored as text).
//!
//! An encoded event is one version byte followed by the postcard encoding of that version's
//! `Event` DTO.

// NOTE: crate-private (issue #21): the frozen DTOs are the format, not the API. This module
// itself (`encode_event`/`decode_event`) is public only with the `testing` feature.
pub(crate) mod v1;

use super::{Event, Timestamp};
use crate::error::{Error, Result};

/// An event decoded without copying its task id, for replay: the id is only needed to find
/// the task, which usually exists already.
#[derive(Debug)]
pub struct EventRef<'a> {
    /// The task's id, borrowed from the encoded bytes.
    pub task_id: &'a str,
    /// The event, with an empty `task_id` (set it from `task_id` where the event needs it).
    /// Whole, so that replay applies it where it was decoded: an `Event` is 280 bytes, and
    /// rebuilt from parts it was copied once more per event.
    pub event: Event,
}

/// The version byte written by this build.
pub const EVENT_VERSION_CURRENT: u8 = 1;

/// Encodes an event in the current persisted version.
pub fn encode_event(event: &Event) -> Result<Vec<u8>> {
    let dto = v1::Event::<&str>::from(event);
    let mut out = vec![EVENT_VERSION_CURRENT];
    postcard::serialize_with_flavor(&dto, AppendTo(&mut out)).map_err(|e| Error::Codec {
        what: format!("event of task {:?}", event.task_id),
        reason: e.to_string(),
        source: Some(Box::new(e)),
    })?;
    debug_assert!(
        decode_event(&out).as_ref().ok() == Some(event),
        "should round-trip an event through the wire format"
    );
    Ok(out)
}

/// Appends an event, encoded in the current persisted version, to `out`.
pub fn encode_event_into(out: &mut Vec<u8>, event: &Event) -> Result<()> {
    let dto = v1::Event::<&str>::from(event);
    out.push(EVENT_VERSION_CURRENT);
    postcard::serialize_with_flavor(&dto, AppendTo(out)).map_err(|e| Error::Codec {
        what: format!("event of task {:?}", event.task_id),
        reason: e.to_string(),
        source: Some(Box::new(e)),
    })?;
    Ok(())
}

/// postcard's output appended to a vector in place: a byte is a `push`, a run of bytes an
/// `extend_from_slice`. postcard's own `to_io` goes through `io::Write` for every field
/// (1.5 % of a bulk write's time), and its `to_extend` through `Extend` iterators (more
/// instructions still, measured); both take or wrap the buffer.
pub(crate) struct AppendTo<'a>(pub &'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline(always)]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    #[inline(always)]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes an event of any supported persisted version.
pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    let (&version, body) = bytes.split_first().ok_or_else(|| Error::Codec {
        what: "event".into(),
        reason: "empty payload".into(),
        source: None,
    })?;
    match version {
        1 => {
            let dto: v1::Event = postcard::from_bytes(body).map_err(|e| Error::Codec {
                what: "event (v1)".into(),
                reason: e.to_string(),
                source: Some(Box::new(e)),
            })?;
            Event::try_from(dto)
        }
        other => Err(Error::Codec {
            what: "event".into(),
            reason: format!(
                "unknown event version {other} (this build reads up to {EVENT_VERSION_CURRENT})"
            ),
            source: None,
        }),
    }
}

/// Decodes an event of any supported version, borrowing its task id from `bytes`. Accepts
/// exactly the inputs [`decode_event`] accepts, with the same result.
pub fn decode_event_ref(bytes: &[u8]) -> Result<EventRef<'_>> {
    let (&version, body) = bytes.split_first().ok_or_else(|| Error::Codec {
        what: "event".into(),
        reason: "empty payload".into(),
        source: None,
    })?;
    let bad = |e: postcard::Error| Error::Codec {
        what: "event (v1)".into(),
        reason: e.to_string(),
        source: Some(Box::new(e)),
    };
    match version {
        1 => {
            // Postcard encodes a struct as its fields in order: the v1 `Event` is
            // (task_id, at_ms, actor) followed by its kind.
            let ((task_id, at_ms, actor), rest): ((&str, i64, Option<String>), _) =
                postcard::take_from_bytes(body).map_err(bad)?;
            let kind: v1::EventKind = postcard::from_bytes(rest).map_err(bad)?;
            Ok(EventRef {
                task_id,
                event: Event {
                    task_id: String::new(),
                    at: Timestamp(at_ms),
                    actor,
                    kind: kind.try_into()?,
                },
            })
        }
        other => Err(Error::Codec {
            what: "event".into(),
            reason: format!(
                "unknown event version {other} (this build reads up to {EVENT_VERSION_CURRENT})"
            ),
            source: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{EventKind, TaskState};

    /// `AppendTo` writes exactly the bytes postcard's own vector output writes, after what the
    /// buffer held: it decides where the bytes go, never what they are.
    #[test]
    fn append_to_writes_what_postcard_writes() {
        let kinds = [
            EventKind::Progress {
                percent: 40,
                step: Some("step".into()),
                message: Some("m".repeat(300)),
            },
            EventKind::Failed { error: "e".into() },
            EventKind::Interrupted {
                reason: "r".into(),
                to: TaskState::Pending,
            },
            EventKind::Retried,
        ];
        for kind in kinds {
            let event = Event {
                task_id: "task-1".into(),
                at: Timestamp(1_700_000_000_000),
                actor: Some("w".into()),
                kind,
            };
            let dto = v1::Event::<&str>::from(&event);
            let want = postcard::to_allocvec(&dto).expect("encodes");
            let mut out = vec![7, 7];
            postcard::serialize_with_flavor(&dto, AppendTo(&mut out)).expect("encodes");
            assert_eq!(
                out.get(..2),
                Some(&[7, 7][..]),
                "what the buffer held stays"
            );
            assert_eq!(out.get(2..), Some(&want[..]), "{event:?}");
            let mut framed = Vec::new();
            encode_event_into(&mut framed, &event).expect("encodes");
            assert_eq!(decode_event(&framed).expect("decodes"), event);
        }
    }
}
