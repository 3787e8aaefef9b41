//! The store's log records. One tag byte, then the body:
//!
//! | tag | body |
//! |-----|------|
//! | 1   | a task event, encoded by `task::wire` (its own version byte, then postcard) |
//! | 2   | session closed: the session id, u64 little-endian |
//!
//! A session is one opening of the store for writing. `Started` events name their session, and
//! a clean close writes "session closed"; a task still running under a session that never
//! closed was cut off by a crash.

use crate::error::{Error, Result};
use crate::task::{Event, wire};

/// Tag of a task event record.
pub const TAG_EVENT: u8 = 1;
/// Tag of a session-closed record.
pub const TAG_SESSION_CLOSED: u8 = 2;

/// A decoded record.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "decoded once per record and consumed at once; boxing would add an allocation to every replayed event"
)]
pub enum Record {
    /// A task event, with its encoded bytes (kept for history).
    Event(Event),
    /// A session closed cleanly.
    SessionClosed(u64),
}

/// Encodes a task event record.
pub fn encode_event(event: &Event) -> Result<Vec<u8>> {
    let body = wire::encode_event(event)?;
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(TAG_EVENT);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Appends an encoded task event record to `out`.
pub fn encode_event_into(out: &mut Vec<u8>, event: &Event) -> Result<()> {
    out.push(TAG_EVENT);
    wire::encode_event_into(out, event)
}

/// Encodes a session-closed record.
pub fn encode_session_closed(session: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(TAG_SESSION_CLOSED);
    out.extend_from_slice(&session.to_le_bytes());
    out
}

/// Adds the record's LSN to a decoding error.
pub fn at_lsn(e: Error, lsn: u64) -> Error {
    match e {
        Error::Codec {
            what,
            reason,
            source,
        } => Error::Codec {
            what: format!("{what} at LSN {lsn}"),
            reason,
            source,
        },
        other => other,
    }
}

/// Decodes a record. `lsn` is used for error context only.
pub fn decode(lsn: u64, bytes: &[u8]) -> Result<Record> {
    let ctx = |e: Error| at_lsn(e, lsn);
    match bytes.split_first() {
        Some((&TAG_EVENT, body)) => Ok(Record::Event(wire::decode_event(body).map_err(ctx)?)),
        Some((&TAG_SESSION_CLOSED, body)) => {
            let id: [u8; 8] = body.try_into().map_err(|_| Error::Codec {
                what: format!("session record at LSN {lsn}"),
                reason: "expected 8 bytes".into(),
                source: None,
            })?;
            Ok(Record::SessionClosed(u64::from_le_bytes(id)))
        }
        Some((tag, _)) => Err(Error::Codec {
            what: format!("record at LSN {lsn}"),
            reason: format!("unknown tag {tag}"),
            source: None,
        }),
        None => Err(Error::Codec {
            what: format!("record at LSN {lsn}"),
            reason: "empty record".into(),
            source: None,
        }),
    }
}

/// The event body of an event record (without the tag), for history storage.
pub fn event_body(bytes: &[u8]) -> &[u8] {
    bytes.get(1..).unwrap_or_default()
}
