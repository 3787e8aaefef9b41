//! Snapshots: the whole store state (tasks, every history, idempotency keys, sessions) as of
//! one LSN, so that open replays only the log after it. Layout (all integers little-endian):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | magic `TASKSNAP` |
//! | 8  | 4 | format version (1) |
//! | 12 | 4 | flags (0) |
//! | 16 | 8 | LSN of the last record included |
//! | 24 | 8 | body length in bytes |
//! | 32 | 4 | CRC-32 of the body |
//! | 36 | 4 | CRC-32 of bytes 0..36 |
//! | 40 | body length | postcard-encoded `SnapshotV1` |
//!
//! Written as: temp file, fsync, rename, fsync directory. Histories are carried whole, so log
//! segments below the oldest kept snapshot can be removed without losing the audit trail.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::history::History;
use super::state::State;
use crate::error::{Error, Result};
use crate::task::{Lease, Task, Timestamp, wire};
use crate::wal::{OpenMode, Storage};

/// Magic bytes at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TASKSNAP";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Largest LSN accepted from a snapshot file (far beyond any real log; keeps `lsn + 1` safe).
pub const LSN_MAX: u64 = u64::MAX / 2;
/// Header length in bytes.
pub const SNAPSHOT_HEADER_LEN: usize = 40;
/// Largest snapshot body this build will read (checked before allocating).
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 30;

const _: () = assert!(SNAPSHOT_HEADER_LEN == 8 + 4 + 4 + 8 + 8 + 4 + 4);

#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    applied_lsn: u64,
    tasks: Vec<TaskV1>,
    removed: Vec<HistoryV1>,
    request_ids: Vec<(String, String)>,
    closed_sessions: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct TaskV1 {
    task: wire::v1::Task,
    version: u64,
    last_lsn: u64,
    lease_owner: Option<String>,
    lease_expires_at_ms: Option<i64>,
    session: u64,
    history: HistoryV1,
}

#[derive(Serialize, Deserialize)]
struct HistoryV1 {
    id: String,
    count: u32,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

/// A snapshot file found on disk.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// Its path.
    pub path: PathBuf,
    /// The LSN in its name.
    pub lsn: u64,
}

/// The file name of the snapshot at `lsn`.
pub fn file_name(lsn: u64) -> String {
    format!("snap-{lsn:020}.snap")
}

/// Snapshot files in `dir`, newest first. Temp files and strangers are ignored.
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<Vec<SnapshotFile>> {
    if !storage.exists(dir) {
        return Ok(Vec::new());
    }
    let mut out: Vec<SnapshotFile> = storage
        .list_dir(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let lsn = name
                .strip_prefix("snap-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()?;
            Some(SnapshotFile { path, lsn })
        })
        .collect();
    out.sort_by_key(|f| std::cmp::Reverse(f.lsn));
    Ok(out)
}

/// Encodes the state as a complete snapshot file image.
pub fn encode(state: &State) -> Result<Vec<u8>> {
    let mut live: Vec<(&String, &Task, &History)> = Vec::with_capacity(state.len());
    let mut removed: Vec<HistoryV1> = Vec::with_capacity(state.removed_len());
    for (id, entry) in state.entries() {
        match entry.task.as_deref() {
            Some(t) => live.push((id, t, &entry.history)),
            None => removed.push(HistoryV1 {
                id: id.clone(),
                count: entry.history.len() as u32,
                bytes: entry.history.as_bytes().to_vec(),
            }),
        }
    }
    live.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let tasks = live
        .into_iter()
        .map(|(id, t, h)| TaskV1 {
            task: wire::v1::task_to_wire(t),
            version: t.version,
            last_lsn: t.last_lsn,
            lease_owner: t.lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at_ms: t.lease.as_ref().map(|l| l.expires_at.0),
            session: t.session,
            history: HistoryV1 {
                id: id.clone(),
                count: h.len() as u32,
                bytes: h.as_bytes().to_vec(),
            },
        })
        .collect();
    removed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut request_ids: Vec<(String, String)> = state
        .request_ids
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    request_ids.sort();
    let mut closed_sessions: Vec<u64> = state.closed_sessions.iter().copied().collect();
    closed_sessions.sort_unstable();
    let body = SnapshotV1 {
        applied_lsn: state.applied_lsn,
        tasks,
        removed,
        request_ids,
        closed_sessions,
    };
    let mut out = vec![0u8; SNAPSHOT_HEADER_LEN];
    postcard::to_io(&body, &mut out).map_err(|e| Error::Codec {
        what: "snapshot".into(),
        reason: e.to_string(),
    })?;
    let body_len = (out.len() - SNAPSHOT_HEADER_LEN) as u64;
    let body_crc = crc32fast::hash(out.get(SNAPSHOT_HEADER_LEN..).unwrap_or_default());
    let mut header = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&state.applied_lsn.to_le_bytes());
    header.extend_from_slice(&body_len.to_le_bytes());
    header.extend_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header);
    header.extend_from_slice(&header_crc.to_le_bytes());
    out.get_mut(..SNAPSHOT_HEADER_LEN)
        .unwrap_or_default()
        .copy_from_slice(&header);
    Ok(out)
}

/// Writes a snapshot image durably: temp file, fsync, rename, fsync directory.
pub fn write(storage: &dyn Storage, dir: &Path, lsn: u64, image: &[u8]) -> Result<PathBuf> {
    storage
        .create_dir_all(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(file_name(lsn));
    let tmp = dir.join(format!("{}.tmp", file_name(lsn)));
    if storage.exists(&tmp) {
        storage
            .remove_file(&tmp)
            .map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let file = storage
        .open(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all_at(image, 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(file);
    storage
        .rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| Error::io("fsync directory", dir, e))?;
    Ok(path)
}

/// Reads and fully checks a snapshot file, returning the state it holds.
pub fn read(storage: &dyn Storage, path: &Path) -> Result<State> {
    let file = storage
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open", path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", path, e))?;
    if len < SNAPSHOT_HEADER_LEN as u64 {
        return Err(Error::corrupt(
            path,
            Some(0),
            None,
            format!("file is {len} bytes, shorter than the header"),
        ));
    }
    if len > SNAPSHOT_BYTES_MAX + SNAPSHOT_HEADER_LEN as u64 {
        return Err(Error::TooLarge {
            what: "snapshot file",
            len,
            max: SNAPSHOT_BYTES_MAX,
        });
    }
    let image = file.read_all().map_err(|e| Error::io("read", path, e))?;
    decode(path, &image)
}

/// Decodes a snapshot image; `path` is for error messages.
pub fn decode(path: &Path, image: &[u8]) -> Result<State> {
    let (header, body) = image
        .split_at_checked(SNAPSHOT_HEADER_LEN)
        .ok_or_else(|| Error::corrupt(path, Some(0), None, "shorter than the snapshot header"))?;
    let field = |at: usize, n: usize| header.get(at..at + n).unwrap_or_default();
    let u32_at = |at| u32::from_le_bytes(field(at, 4).try_into().unwrap_or_default());
    let u64_at = |at| u64::from_le_bytes(field(at, 8).try_into().unwrap_or_default());
    if field(0, 8) != SNAPSHOT_MAGIC {
        return Err(Error::corrupt(
            path,
            Some(0),
            None,
            "bad magic (not a tasklog snapshot)",
        ));
    }
    if crc32fast::hash(field(0, 36)) != u32_at(36) {
        return Err(Error::corrupt(
            path,
            Some(36),
            None,
            "header checksum mismatch",
        ));
    }
    let version = u32_at(8);
    if version != SNAPSHOT_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path.into(),
            found: version,
            supported: SNAPSHOT_VERSION,
        });
    }
    let lsn = u64_at(16);
    if lsn > LSN_MAX {
        return Err(Error::corrupt(
            path,
            Some(16),
            None,
            format!("impossible LSN {lsn}"),
        ));
    }
    let body_len = u64_at(24);
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
    if crc32fast::hash(body) != u32_at(32) {
        return Err(Error::corrupt(
            path,
            Some(SNAPSHOT_HEADER_LEN as u64),
            Some(lsn),
            "body checksum mismatch",
        ));
    }
    let snap: SnapshotV1 = postcard::from_bytes(body).map_err(|e| {
        Error::corrupt(
            path,
            Some(SNAPSHOT_HEADER_LEN as u64),
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
    state.applied_lsn = snap.applied_lsn;
    state.reserve(snap.tasks.len() + snap.removed.len());
    for t in snap.tasks {
        let mut task = wire::v1::task_from_wire(t.task).map_err(bad)?;
        task.id.clone_from(&t.history.id);
        task.version = t.version;
        task.last_lsn = t.last_lsn;
        task.session = t.session;
        task.lease = t
            .lease_owner
            .zip(t.lease_expires_at_ms)
            .map(|(owner, ms)| Lease {
                owner,
                expires_at: Timestamp(ms),
                claim_lsn: 0,
            });
        let history = History::from_bytes(t.history.bytes, t.history.count).map_err(bad)?;
        if let Some(lease) = task.lease.as_mut() {
            // Not stored in v1 snapshots: the claim is the task's last pending -> running move.
            lease.claim_lsn = history.last_start_lsn().unwrap_or(0);
        }
        if state.history(&task.id).is_some() {
            return Err(bad(codec(format!("task {:?} listed twice", task.id))));
        }
        state.load(task.id.clone(), Some(task), history);
    }
    for h in snap.removed {
        if state.history(&h.id).is_some() {
            return Err(bad(codec(format!("history {:?} listed twice", h.id))));
        }
        let history = History::from_bytes(h.bytes, h.count).map_err(bad)?;
        state.load(h.id, None, history);
    }
    state.request_ids = snap.request_ids.into_iter().collect();
    state.closed_sessions = snap.closed_sessions.into_iter().collect();
    Ok(state)
}

fn codec(reason: String) -> Error {
    Error::Codec {
        what: "snapshot".into(),
        reason,
    }
}
