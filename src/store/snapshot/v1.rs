//! Snapshot format v1 (read only; written by tasklog before format v2): a 40-byte header, then
//! one postcard body carrying every history arena inline. Layout in `docs/format.md`.

use std::path::Path;

use serde::Deserialize;

use super::{LSN_MAX, codec, field, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::store::history::History;
use crate::store::state::{Held, State};
use crate::task::{Lease, Timestamp, wire};

/// Header length in bytes.
pub const HEADER_LEN: usize = 40;

const _: () = assert!(HEADER_LEN == 8 + 4 + 4 + 8 + 8 + 4 + 4);

#[derive(Deserialize)]
struct SnapshotV1 {
    applied_lsn: u64,
    tasks: Vec<TaskV1>,
    removed: Vec<HistoryV1>,
    request_ids: Vec<(String, String)>,
    closed_sessions: Vec<u64>,
}

#[derive(Deserialize)]
struct TaskV1 {
    task: wire::v1::Task,
    version: u64,
    last_lsn: u64,
    lease_owner: Option<String>,
    lease_expires_at_ms: Option<i64>,
    session: u64,
    history: HistoryV1,
}

#[derive(Deserialize)]
struct HistoryV1 {
    id: String,
    count: u32,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

/// Decodes a whole v1 image (magic and version already checked), checking every history.
pub fn decode(path: &Path, image: &[u8]) -> Result<State> {
    let (header, body) = image
        .split_at_checked(HEADER_LEN)
        .ok_or_else(|| Error::corrupt(path, Some(0), None, "shorter than the snapshot header"))?;
    if crc32fast::hash(field(header, 0, 36)) != u32_at(header, 36) {
        return Err(Error::corrupt(
            path,
            Some(36),
            None,
            "header checksum mismatch",
        ));
    }
    let lsn = u64_at(header, 16);
    if lsn > LSN_MAX {
        return Err(Error::corrupt(
            path,
            Some(16),
            None,
            format!("impossible LSN {lsn}"),
        ));
    }
    let body_len = u64_at(header, 24);
    if body_len != body.len() as u64 {
        return Err(Error::corrupt(
            path,
            Some(24),
            Some(lsn),
            format!(
                "header says the body is {body_len} bytes, the file holds {}",
                body.len()
            ),
        ));
    }
    if crc32fast::hash(body) != u32_at(header, 32) {
        return Err(Error::corrupt(
            path,
            Some(HEADER_LEN as u64),
            Some(lsn),
            "body checksum mismatch",
        ));
    }
    let snap: SnapshotV1 = postcard::from_bytes(body).map_err(|e| {
        Error::corrupt(
            path,
            Some(HEADER_LEN as u64),
            Some(lsn),
            format!("body does not decode: {e}"),
        )
    })?;
    if snap.applied_lsn != lsn {
        return Err(Error::corrupt(
            path,
            Some(16),
            Some(lsn),
            "header LSN differs from body LSN",
        ));
    }
    into_state(path, snap)
}

fn into_state(path: &Path, snap: SnapshotV1) -> Result<State> {
    let bad = |e: Error| Error::corrupt(path, None, Some(snap.applied_lsn), e.to_string());
    let mut state = State::default();
    // Indexed once at the end, in bulk (see `index::Builder`).
    state.suspend_indexes();
    state.applied_lsn = snap.applied_lsn;
    state.reserve(snap.tasks.len() + snap.removed.len());
    for t in snap.tasks {
        let mut task = wire::v1::task_from_wire(t.task).map_err(bad)?;
        task.id.clone_from(&t.history.id);
        task.version = t.version;
        task.last_lsn = t.last_lsn;
        task.session = t.session;
        task.lease = t.lease_owner.zip(t.lease_expires_at_ms).map(|(owner, ms)| {
            Box::new(Lease {
                owner,
                expires_at: Timestamp(ms),
                claim_lsn: 0,
            })
        });
        let history = History::from_bytes(t.history.bytes, t.history.count).map_err(bad)?;
        if let Some(lease) = task.lease.as_mut() {
            // Not stored in v1 snapshots: the claim is the task's last pending -> running move.
            lease.claim_lsn = history.last_start_lsn().unwrap_or(0);
        }
        if state.history(&task.id).is_some() {
            return Err(bad(codec(format!("task {:?} listed twice", task.id))));
        }
        let id = task.id.clone();
        state.load(&id, Some(Held::new(task)), history);
    }
    for h in snap.removed {
        if state.history(&h.id).is_some() {
            return Err(bad(codec(format!("history {:?} listed twice", h.id))));
        }
        let history = History::from_bytes(h.bytes, h.count).map_err(bad)?;
        state.load(&h.id, None, history);
    }
    state.request_ids = snap.request_ids.into_iter().collect();
    state.closed_sessions = snap.closed_sessions.into_iter().collect();
    state.rebuild_indexes();
    Ok(state)
}

/// Recomputes both CRCs of a v1 image in place (fuzzing: reach the body decoder).
pub fn reseal(image: &mut [u8]) {
    let Some((header, body)) = image.split_at_mut_checked(HEADER_LEN) else {
        return;
    };
    let body_crc = crc32fast::hash(body);
    if let Some(f) = header.get_mut(32..36) {
        f.copy_from_slice(&body_crc.to_le_bytes());
    }
    let header_crc = crc32fast::hash(header.get(..36).unwrap_or_default());
    if let Some(f) = header.get_mut(36..40) {
        f.copy_from_slice(&header_crc.to_le_bytes());
    }
}
