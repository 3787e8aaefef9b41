//! The persisted form of events. Domain types change; these do not. Each persisted version is a
//! frozen set of DTOs (`v1`, later `v2`, ...) converted to and from the domain types, so that a
//! log written today stays readable after the events change. Rules (see docs/format.md):
//! add enum variants only at the end, never reorder or remove fields, never use
//! `serde_json::Value`, untagged, flatten or skip in a DTO (JSON values are stored as text).
//!
//! An encoded event is one version byte followed by the postcard encoding of that version's
//! `Event` DTO.

pub mod v1;

use super::Event;
use crate::error::{Error, Result};

/// The version byte written by this build.
pub const EVENT_VERSION_CURRENT: u8 = 1;

/// Encodes an event in the current persisted version.
pub fn encode_event(event: &Event) -> Result<Vec<u8>> {
    let dto = v1::Event::from(event);
    let mut out = vec![EVENT_VERSION_CURRENT];
    postcard::to_io(&dto, &mut out).map_err(|e| Error::Codec {
        what: format!("event of task {:?}", event.task_id),
        reason: e.to_string(),
    })?;
    debug_assert!(
        decode_event(&out).as_ref().ok() == Some(event),
        "should round-trip an event through the wire format"
    );
    Ok(out)
}

/// Decodes an event of any supported persisted version.
pub fn decode_event(bytes: &[u8]) -> Result<Event> {
    let (&version, body) = bytes.split_first().ok_or_else(|| Error::Codec {
        what: "event".into(),
        reason: "empty payload".into(),
    })?;
    match version {
        1 => {
            let dto: v1::Event = postcard::from_bytes(body).map_err(|e| Error::Codec {
                what: "event (v1)".into(),
                reason: e.to_string(),
            })?;
            Event::try_from(dto)
        }
        other => Err(Error::Codec {
            what: "event".into(),
            reason: format!(
                "unknown event version {other} (this build reads up to {EVENT_VERSION_CURRENT})"
            ),
        }),
    }
}
