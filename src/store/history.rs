//! A task's audit trail, kept compactly: a byte arena holding, for each event,
//! `lsn u64 | from u8 | to u8 | len u32 | encoded event` (little-endian). Events are decoded
//! only when someone asks for the history, which keeps open fast and memory small.
//!
//! A history opened from a snapshot (format v2 or v3) does not own its older events: they stay
//! where they are in the snapshot's history section, shared by every history loaded from that
//! file ([`Arena`]), and only events appended after the open go to the history's own vector.
//! Reading a history walks the shared part, then the own part. The shared part's
//! structure is checked when it is read (the section's CRC was checked when the file was
//! loaded); a damaged entry there is `Error::Corrupt` naming the snapshot file and offset.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::store::log::Log;
use crate::store::record::TAG_EVENT;
use crate::store::snapshot::SNAPSHOT_BYTES_MAX;
use crate::store::snapshot::blocks::{BLOCK_BYTES, Blocks};
use crate::task::{EventKind, TaskState, Timestamp, wire};
use crate::wal::StorageFile;

/// Bytes of an entry's header: `lsn u64 | from u8 | to u8 | len u32`.
pub const ENTRY_HEADER_LEN: usize = 14;

/// `(lsn, from, to, encoded event)`.
type RawEntry<'a> = (u64, Option<TaskState>, Option<TaskState>, &'a [u8]);
const NO_STATE: u8 = 0xFF;
/// First allocation of a history arena, in events the size of the first one: a typical task
/// sees five or six (created, started, progress..., a terminal event).
const HISTORY_EVENTS_INITIAL: usize = 6;
/// Smallest first allocation of a history arena.
const HISTORY_BYTES_INITIAL_MIN: usize = 256;
/// Largest first allocation beyond the first event itself: a task created by a large event
/// (an import of a task with big outputs) must not reserve six times that up front.
const HISTORY_BYTES_INITIAL_MAX: usize = 4096;

const _: () = assert!(ENTRY_HEADER_LEN == 8 + 1 + 1 + 4);

/// The history section of one snapshot file, shared (read-only) by every history loaded from
/// it. It lives as long as any of those histories. Offsets into it are always of the
/// uncompressed histories (v2's section as it is; v3's once decompressed).
///
/// IMPORTANT: a section opened from disk keeps only the file handle (and, for v3, the block
/// index): a history's bytes are read (`pread`) each time it is read, so resident memory does
/// not grow with the audit trail. A snapshot file is never written again once renamed into
/// place, and pruning it only unlinks its name, so the handle stays valid for as long as
/// histories point into it. The page cache is the cache: a warm read is one system call of a
/// few hundred bytes (v2) or of one block, then its decompression (v3; the last block read is
/// kept, so reading the histories in file order decompresses each block once).
#[derive(Debug)]
pub struct Arena {
    /// The snapshot file (for error messages).
    file: PathBuf,
    /// Where the section starts in that file.
    file_offset: u64,
    /// The histories' length in bytes, uncompressed.
    len: u64,
    /// The section's stored bytes.
    source: Source,
    /// v3: the block index, and the last block decompressed.
    blocks: Option<(Blocks, Mutex<LastBlock>)>,
}

/// The last block of a v3 section decompressed, and its number. A `Vec` behind the `Arc`, not
/// an `Arc<[u8]>`: the decompressed vector moves in rather than being copied.
type LastBlock = Option<(usize, Arc<Vec<u8>>)>;

#[derive(Debug)]
enum Source {
    /// The section, in memory (a snapshot image decoded from memory: tests, fuzzing).
    Memory(Box<[u8]>),
    /// The snapshot file, read on demand at `file_offset + start`.
    Disk(Box<dyn StorageFile>),
}

impl Arena {
    /// Wraps a snapshot's history section held in memory, which starts at byte `file_offset`
    /// of `file`.
    pub fn new(file: &Path, file_offset: u64, bytes: Box<[u8]>) -> Arc<Self> {
        Arc::new(Arena {
            file: file.into(),
            file_offset,
            len: bytes.len() as u64,
            source: Source::Memory(bytes),
            blocks: None,
        })
    }

    /// A history section of `len` bytes at `file_offset` of the open snapshot file `handle`
    /// (`file` names it in errors). The caller checked the section's CRC.
    pub fn on_disk(
        file: &Path,
        file_offset: u64,
        len: u64,
        handle: Box<dyn StorageFile>,
    ) -> Arc<Self> {
        Arc::new(Arena {
            file: file.into(),
            file_offset,
            len,
            source: Source::Disk(handle),
            blocks: None,
        })
    }

    /// A v3 history section at `file_offset` of `file`: its stored bytes in memory (`Ok`) or
    /// in the open file (`Err`), read through `blocks`, its index.
    pub fn in_blocks(
        file: &Path,
        file_offset: u64,
        stored: std::result::Result<Box<[u8]>, Box<dyn StorageFile>>,
        blocks: Blocks,
    ) -> Arc<Self> {
        Arc::new(Arena {
            file: file.into(),
            file_offset,
            len: blocks.raw_len(),
            source: match stored {
                Ok(bytes) => Source::Memory(bytes),
                Err(handle) => Source::Disk(handle),
            },
            blocks: Some((blocks, Mutex::new(None))),
        })
    }

    /// The open snapshot file, for a section read on demand.
    pub fn disk_file(&self) -> Option<&dyn StorageFile> {
        match &self.source {
            Source::Disk(handle) => Some(handle.as_ref()),
            Source::Memory(_) => None,
        }
    }

    /// The histories' length in bytes, uncompressed.
    pub fn len(&self) -> usize {
        usize::try_from(self.len).unwrap_or(usize::MAX)
    }

    /// True for an empty section.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The snapshot file this section belongs to.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// `Corrupt` for damage at uncompressed byte `at` of the histories: at that place in the
    /// file (v2), or at the block that holds it (v3).
    fn corrupt_at(&self, at: usize, reason: String) -> Error {
        match &self.blocks {
            None => Error::corrupt(&self.file, Some(self.file_offset + at as u64), None, reason),
            Some((blocks, _)) => {
                let i = blocks.block_of(at);
                Error::corrupt(
                    &self.file,
                    Some(self.file_offset + blocks.stored_range(i).0),
                    None,
                    format!("{reason} (uncompressed byte {at} of the histories, in block {i})"),
                )
            }
        }
    }

    /// Bytes `start..end` of the histories (bounds checked by the caller at load), borrowed
    /// when in memory and not compressed, else read from the file or decompressed.
    fn read(&self, start: usize, end: usize) -> Result<Cow<'_, [u8]>> {
        let Some((blocks, last)) = &self.blocks else {
            return self.read_stored(start as u64, end.saturating_sub(start));
        };
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(BLOCK_BYTES as usize));
        let mut at = start;
        while at < end {
            let i = blocks.block_of(at);
            // The lock is held only to look and to swap: readers on other threads read and
            // decompress their blocks at the same time.
            let kept = match &*last.lock() {
                Some((held, block)) if *held == i => Some(Arc::clone(block)),
                _ => None,
            };
            let block = match kept {
                Some(block) => block,
                None => {
                    let (from, to) = blocks.stored_range(i);
                    let stored = self.read_stored(from, (to - from) as usize)?;
                    let block =
                        Arc::new(blocks.decompress(&self.file, self.file_offset, i, stored)?);
                    *last.lock() = Some((i, Arc::clone(&block)));
                    block
                }
            };
            let raw = blocks.raw_range(i);
            let upto = end.min(raw.end);
            out.extend_from_slice(
                block
                    .get(at - raw.start..upto - raw.start)
                    .unwrap_or_default(),
            );
            at = upto;
        }
        Ok(Cow::Owned(out))
    }

    /// `len` stored bytes at `start` of the section (bounds checked at load), borrowed when in
    /// memory, else read from the file.
    fn read_stored(&self, start: u64, len: usize) -> Result<Cow<'_, [u8]>> {
        match &self.source {
            Source::Memory(bytes) => Ok(Cow::Borrowed(
                usize::try_from(start)
                    .ok()
                    .and_then(|s| bytes.get(s..s.checked_add(len)?))
                    .unwrap_or_default(),
            )),
            Source::Disk(handle) => {
                let mut buf = vec![0u8; len];
                let at = self.file_offset + start;
                let done = handle
                    .read_full_at(&mut buf, at)
                    .map_err(|e| Error::io("read", &self.file, e))?;
                if done < len {
                    return Err(Error::corrupt(
                        &self.file,
                        Some(at + done as u64),
                        None,
                        "snapshot file ended inside a history (was it truncated?)",
                    ));
                }
                Ok(Cow::Owned(buf))
            }
        }
    }
}

/// The events of a history that live in a snapshot's [`Arena`]: bytes `start..end` of it.
#[derive(Clone, Debug)]
struct Shared {
    arena: Arc<Arena>,
    start: usize,
    end: usize,
}

/// A [`Shared`] part as a history reads it, wherever the history keeps it.
#[derive(Clone, Copy)]
struct SharedRef<'a> {
    arena: &'a Arc<Arena>,
    start: usize,
    end: usize,
}

impl<'a> SharedRef<'a> {
    fn bytes(self) -> Result<Cow<'a, [u8]>> {
        self.arena.read(self.start, self.end)
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn to_shared(self) -> Shared {
        Shared {
            arena: Arc::clone(self.arena),
            start: self.start,
            end: self.end,
        }
    }
}

impl Shared {
    fn as_ref(&self) -> SharedRef<'_> {
        SharedRef {
            arena: &self.arena,
            start: self.start,
            end: self.end,
        }
    }
}

/// Where a [`Parts::InSnapshot`] history's bytes are in its arena, in one word: the start in
/// the high `64 - SPAN_LEN_BITS` bits (a snapshot is at most `SNAPSHOT_BYTES_MAX`, 2^36
/// bytes), the length in the low bits. A history too long for them is held `Loaded`.
#[derive(Clone, Copy, Debug)]
struct Span(u64);

const SPAN_LEN_BITS: u32 = 28;

// Every start a snapshot can hold fits a span.
const _: () = assert!(SNAPSHOT_BYTES_MAX <= 1 << (64 - SPAN_LEN_BITS));

impl Span {
    fn new(start: usize, end: usize) -> Option<Span> {
        let len = (end - start) as u64;
        let start = start as u64;
        (len >> SPAN_LEN_BITS == 0 && start >> (64 - SPAN_LEN_BITS) == 0)
            .then_some(Span(start << SPAN_LEN_BITS | len))
    }

    fn start(self) -> usize {
        (self.0 >> SPAN_LEN_BITS) as usize
    }

    fn end(self) -> usize {
        self.start() + (self.0 & ((1 << SPAN_LEN_BITS) - 1)) as usize
    }
}

/// Where a history lies in a snapshot's history section: its bytes `start..end` (uncompressed)
/// and its event count, checked against the section's length ([`Place::new`]).
#[derive(Clone, Copy, Debug)]
pub struct Place {
    start: usize,
    end: usize,
    count: u32,
}

impl Place {
    /// The `count` events at `arena[start..start + len]`. Only the bounds are checked here
    /// (cheap); the entries are checked when they are read.
    pub fn new(arena: &Arena, start: u64, len: u64, count: u32) -> Result<Place> {
        let end = start
            .checked_add(len)
            .filter(|&end| end <= arena.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "history bytes {start}+{len} lie outside the {}-byte history section",
                    arena.len()
                ))
            })?;
        // Every entry has a header, so `count` can only be this large if the bytes are there.
        if u64::from(count) > len / ENTRY_HEADER_LEN as u64 || (count == 0) != (len == 0) {
            return Err(bad(format!(
                "{count} events cannot fill a {len}-byte history"
            )));
        }
        let to_usize = |v: u64| usize::try_from(v).map_err(|_| bad("offset too large".into()));
        Ok(Place {
            start: to_usize(start)?,
            end: to_usize(end)?,
            count,
        })
    }
}

/// The encoded history of one task.
#[derive(Clone, Debug, Default)]
pub struct History {
    parts: Parts,
    /// Events in all parts.
    count: u32,
}

/// Where a history's events are. An enum with the loaded case boxed keeps `History` at 32
/// bytes (as before v2), so the map that holds 200,000 of them does not grow for stores
/// built by replay.
#[derive(Clone, Debug)]
enum Parts {
    /// Built by replay or loaded from a v1 snapshot: one owned arena.
    Owned(Vec<u8>),
    /// Loaded from a v2 or v3 snapshot, nothing appended since: events read in place. Unboxed, as
    /// every history of a snapshot open starts: a `Box<Loaded>` per task was one more
    /// allocation (48 bytes) and about 6 % of the open (docs/benchmarks.md).
    InSnapshot(Arc<Arena>, Span),
    /// Loaded from a v2 or v3 snapshot: events read in place, then those appended since.
    Loaded(Box<Loaded>),
    /// Events whose bytes stay in the log (a store over a log that reads by LSN): the part
    /// shared with a snapshot, then the positions of the events since.
    Logged(Box<Logged>),
    /// Only events whose bytes stay in the log, no snapshot part: their positions (as
    /// `Logged::refs`), the first `count * ENTRY_HEADER_LEN` bytes of the buffer, the rest room
    /// to grow. Unboxed, with no length or capacity beside it: a store built by writes or by
    /// replay holds every history this way, and a `Box<Logged>` per task was one more
    /// allocation (64 bytes) per task.
    InLog(Box<[u8]>),
}

/// A history whose events after its snapshot part are read from the log.
///
/// `refs` holds one entry header per event (`lsn u64 | from u8 | to u8 | len u32`, as in the
/// arena, without the event bytes): 14 bytes per event instead of the event. The bytes are
/// the log record at that LSN, minus its tag byte (see `record`).
#[derive(Clone, Debug)]
struct Logged {
    shared: Option<Shared>,
    refs: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Loaded {
    shared: Shared,
    own: Vec<u8>,
}

impl Default for Parts {
    fn default() -> Self {
        Parts::Owned(Vec::new())
    }
}

const _: () = assert!(std::mem::size_of::<History>() == 32);

/// One event of a task's history, decoded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// One event of a task's history as its states say it: where it moved the task, not what it
/// was ([`crate::Store::history_steps`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryStep {
    /// The event's log sequence number.
    pub lsn: u64,
    /// The state before (None for the first event).
    pub from: Option<TaskState>,
    /// The state after (None once the task was removed).
    pub to: Option<TaskState>,
}

/// An entry header: `lsn u64 | from u8 | to u8 | len u32`, little-endian (docs/format.md), as
/// both the arena (before the event's bytes) and a history kept in the log (alone) hold it.
fn entry_header(
    lsn: u64,
    from: Option<TaskState>,
    to: Option<TaskState>,
    len: u32,
) -> [u8; ENTRY_HEADER_LEN] {
    let mut entry = [0u8; ENTRY_HEADER_LEN];
    entry[..8].copy_from_slice(&lsn.to_le_bytes());
    entry[8] = from.map_or(NO_STATE, wire::v1::state_code);
    entry[9] = to.map_or(NO_STATE, wire::v1::state_code);
    entry[10..].copy_from_slice(&len.to_le_bytes());
    entry
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
        let bytes = match &mut self.parts {
            Parts::Owned(bytes) => {
                if bytes.capacity() == 0 {
                    // Most tasks see a handful of events: one allocation up front instead of
                    // several regrowths (replaying a million events is otherwise dominated by
                    // the allocator). A loaded history has seen most of its events already:
                    // its own part grows from nothing.
                    let first = ENTRY_HEADER_LEN + event_bytes.len();
                    bytes.reserve(
                        (HISTORY_EVENTS_INITIAL * first)
                            .clamp(HISTORY_BYTES_INITIAL_MIN, HISTORY_BYTES_INITIAL_MAX)
                            .max(first),
                    );
                }
                bytes
            }
            Parts::InSnapshot(..) | Parts::Loaded(_) => self.own_mut(),
            Parts::Logged(_) | Parts::InLog(_) => {
                // NOTE: a state keeps positions for all its histories or for none (see
                // `State::histories_in_log`), so a logged history only grows by positions.
                debug_assert!(false, "bytes pushed to a history kept in the log");
                let _ = self.push_ref(lsn, from, to, event_bytes.len());
                return;
            }
        };
        bytes.reserve(ENTRY_HEADER_LEN + event_bytes.len());
        bytes.extend_from_slice(&entry_header(lsn, from, to, len));
        bytes.extend_from_slice(event_bytes);
        self.count += 1;
    }

    /// Appends the position of one event whose bytes (`len` of them) stay in the log at
    /// `lsn`. Returns false, changing nothing, when this history already holds event bytes of
    /// its own (from a v1 snapshot, or built before positions were kept): the caller then
    /// pushes the bytes, so that one history never mixes the two.
    pub fn push_ref(
        &mut self,
        lsn: u64,
        from: Option<TaskState>,
        to: Option<TaskState>,
        len: usize,
    ) -> bool {
        let len = u32::try_from(len).expect("should be bounded by the log's record limit");
        let entry = entry_header(lsn, from, to, len);
        if let Parts::Owned(bytes) = &self.parts
            && bytes.is_empty()
        {
            self.parts = Parts::InLog(Box::default());
        }
        if let Parts::InLog(buf) = &mut self.parts {
            let used = self.count as usize * ENTRY_HEADER_LEN;
            if used + ENTRY_HEADER_LEN > buf.len() {
                let room = (2 * buf.len()).max(HISTORY_EVENTS_INITIAL * ENTRY_HEADER_LEN);
                let mut grown = vec![0u8; room].into_boxed_slice();
                grown[..used].copy_from_slice(&buf[..used]);
                *buf = grown;
            }
            buf[used..used + ENTRY_HEADER_LEN].copy_from_slice(&entry);
            self.count += 1;
            return true;
        }
        // A history loaded from a snapshot, with no event bytes of its own, keeps the positions
        // of its later events beside its snapshot part.
        let snapshot_only = match &self.parts {
            Parts::InSnapshot(..) => true,
            Parts::Loaded(loaded) => loaded.own.is_empty(),
            Parts::Owned(_) | Parts::Logged(_) | Parts::InLog(_) => false,
        };
        if snapshot_only {
            let shared = self.shared().map(SharedRef::to_shared);
            self.parts = Parts::Logged(Box::new(Logged {
                shared,
                refs: Vec::new(),
            }));
        }
        let refs = match &mut self.parts {
            Parts::Logged(logged) => &mut logged.refs,
            Parts::Owned(_) | Parts::Loaded(_) => return false,
            Parts::InSnapshot(..) => unreachable!("moved to Logged above"),
            Parts::InLog(_) => unreachable!("an InLog history was pushed to above"),
        };
        refs.extend_from_slice(&entry);
        self.count += 1;
        true
    }

    /// The positions of the events kept in the log (empty for other histories).
    fn refs(&self) -> &[u8] {
        match &self.parts {
            Parts::Logged(logged) => &logged.refs,
            Parts::InLog(buf) => buf
                .get(..self.count as usize * ENTRY_HEADER_LEN)
                .expect("an InLog history holds an entry per event"),
            Parts::Owned(_) | Parts::InSnapshot(..) | Parts::Loaded(_) => &[],
        }
    }

    /// True when some events of this history must be read from the log.
    pub fn reads_log(&self) -> bool {
        !self.refs().is_empty()
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when there are no events.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The history's own bytes (those not in a snapshot).
    fn own(&self) -> &[u8] {
        match &self.parts {
            Parts::Owned(bytes) => bytes,
            Parts::Loaded(loaded) => &loaded.own,
            Parts::InSnapshot(..) | Parts::Logged(_) | Parts::InLog(_) => &[],
        }
    }

    /// The own part of a history loaded from a snapshot, to append to: boxed with it on the
    /// first append.
    fn own_mut(&mut self) -> &mut Vec<u8> {
        if let Parts::InSnapshot(..) = &self.parts {
            let shared = self.shared().map(SharedRef::to_shared);
            let shared = shared.expect("a history in a snapshot has a shared part");
            self.parts = Parts::Loaded(Box::new(Loaded {
                shared,
                own: Vec::new(),
            }));
        }
        match &mut self.parts {
            Parts::Loaded(loaded) => &mut loaded.own,
            _ => unreachable!("own_mut is for histories loaded from a snapshot"),
        }
    }

    /// The part shared with a snapshot (read from its file when not in memory); empty for a
    /// history without one.
    fn shared_bytes(&self) -> Result<Cow<'_, [u8]>> {
        match self.shared() {
            Some(s) => s.bytes(),
            None => Ok(Cow::Borrowed(&[])),
        }
    }

    /// Appends the encoded events to `out` (the part shared with a snapshot, then the part
    /// appended since) and returns how many bytes were added. For writing snapshots. Events
    /// kept in the log are written as their entry header followed by zeros, and a
    /// [`LoggedPlace`] is pushed to `fill` for each: the caller reads them from the log.
    pub fn write_to(&self, out: &mut Vec<u8>, fill: &mut Vec<LoggedPlace>) -> Result<usize> {
        let start = out.len();
        let shared = self.shared_bytes()?;
        out.extend_from_slice(&shared);
        out.extend_from_slice(self.own());
        for entry in refs(self.refs()) {
            let (_, header, len) = entry.map_err(bad)?;
            let header: [u8; ENTRY_HEADER_LEN] = header
                .try_into()
                .map_err(|_| bad("truncated history position".into()))?;
            fill.push(LoggedPlace {
                at: out.len(),
                header,
            });
            out.extend_from_slice(&header);
            out.resize(out.len() + len, 0);
        }
        Ok(out.len() - start)
    }

    /// Bytes of encoded events in all parts (what a snapshot writes).
    pub fn byte_len(&self) -> usize {
        let logged: usize = refs(self.refs())
            .map(|e| e.map_or(0, |(_, header, len)| header.len() + len))
            .sum();
        self.shared().map_or(0, |s| s.len()) + self.own().len() + logged
    }

    /// Bytes of this history held in memory (its own part's capacity): what it costs besides
    /// its fixed size.
    pub fn heap_bytes(&self) -> usize {
        match &self.parts {
            Parts::Owned(bytes) => bytes.capacity(),
            Parts::InSnapshot(..) => 0,
            Parts::Loaded(loaded) => std::mem::size_of::<Loaded>() + loaded.own.capacity(),
            Parts::Logged(logged) => std::mem::size_of::<Logged>() + logged.refs.capacity(),
            Parts::InLog(buf) => buf.len(),
        }
    }

    /// Points the first `len` bytes (`count` events) of this history at `arena[start..]`: a
    /// snapshot that now holds them on disk. Events appended after that snapshot was encoded
    /// (the bytes beyond `len`) stay in memory. Histories only grow, so the first `len` bytes
    /// are the ones the snapshot wrote.
    pub fn rebase(&mut self, arena: &Arc<Arena>, start: u64, len: u64, count: u32) -> Result<()> {
        if matches!(self.parts, Parts::Logged(_) | Parts::InLog(_)) {
            // The snapshot wrote the shared part and the first events kept in the log; the
            // positions of those after it stay.
            let in_log = self.refs();
            let shared_count = self.count - refs(in_log).count() as u32;
            let written = count.checked_sub(shared_count).ok_or_else(|| {
                bad(format!(
                    "a snapshot wrote {count} events of a history of {}",
                    self.count
                ))
            })?;
            let tail = in_log
                .get(written as usize * ENTRY_HEADER_LEN..)
                .ok_or_else(|| {
                    bad(format!(
                        "a snapshot wrote {count} events of a history of {}",
                        self.count
                    ))
                })?
                .to_vec();
            let mut rebased = History::from_shared(arena, start, len, count)?;
            if !tail.is_empty() {
                rebased.parts = Parts::Logged(Box::new(Logged {
                    shared: rebased.shared().map(SharedRef::to_shared),
                    refs: tail,
                }));
            }
            rebased.count = self.count;
            *self = rebased;
            return Ok(());
        }
        let len_usize = usize::try_from(len).map_err(|_| bad("offset too large".into()))?;
        let shared_len = self.shared().map_or(0, |s| s.len());
        let tail = len_usize
            .checked_sub(shared_len)
            .and_then(|from| self.own().get(from..))
            .ok_or_else(|| {
                bad(format!(
                    "a snapshot wrote {len} bytes of a history of {}",
                    self.byte_len()
                ))
            })?;
        let tail_count =
            u32::try_from(entries(tail).count()).map_err(|_| bad("too many events".into()))?;
        if count.checked_add(tail_count) != Some(self.count) {
            return Err(bad(format!(
                "a snapshot wrote {count} events of a history of {}, {tail_count} came after",
                self.count
            )));
        }
        let mut rebased = History::from_shared(arena, start, len, count)?;
        if !tail.is_empty() {
            *rebased.own_mut() = tail.to_vec();
        }
        rebased.count = self.count;
        *self = rebased;
        Ok(())
    }

    /// Rebuilds a history from a v1 snapshot's arena, checking its structure.
    pub fn from_bytes(bytes: Vec<u8>, count: u32) -> Result<Self> {
        let h = History {
            parts: Parts::Owned(bytes),
            count,
        };
        h.check()?;
        Ok(h)
    }

    /// A history whose `count` events are `arena[start..start + len]`, read in place. Only
    /// the bounds are checked here (cheap); the entries are checked when they are read.
    pub fn from_shared(arena: &Arc<Arena>, start: u64, len: u64, count: u32) -> Result<Self> {
        Ok(History::from_place(
            arena,
            Place::new(arena, start, len, count)?,
        ))
    }

    /// The history at `place` of `arena`, read in place.
    pub fn from_place(arena: &Arc<Arena>, place: Place) -> Self {
        let Place { start, end, count } = place;
        let parts = match Span::new(start, end) {
            Some(span) => Parts::InSnapshot(Arc::clone(arena), span),
            None => Parts::Loaded(Box::new(Loaded {
                shared: Shared {
                    arena: Arc::clone(arena),
                    start,
                    end,
                },
                own: Vec::new(),
            })),
        };
        History { parts, count }
    }

    /// Frees spare capacity (after a bulk load).
    pub fn shrink(&mut self) {
        let bytes = match &mut self.parts {
            Parts::Owned(bytes) => bytes,
            Parts::InSnapshot(..) => return,
            Parts::Loaded(loaded) => &mut loaded.own,
            Parts::Logged(logged) => &mut logged.refs,
            Parts::InLog(buf) => {
                let used = self.count as usize * ENTRY_HEADER_LEN;
                if buf.len() - used > used / 2 + 64 {
                    *buf = Box::from(&buf[..used]);
                }
                return;
            }
        };
        // Only when it is worth a reallocation.
        if bytes.capacity() - bytes.len() > bytes.len() / 2 + 64 {
            bytes.shrink_to_fit();
        }
    }

    /// Checks the structure of every entry (lengths, state codes) and the event count,
    /// without decoding the events.
    pub fn check(&self) -> Result<()> {
        let shared = self.shared_bytes()?;
        let mut seen = 0u64;
        for entry in self.raw_entries(&shared) {
            entry?;
            seen += 1;
        }
        for entry in refs(self.refs()) {
            entry.map_err(bad)?;
            seen += 1;
        }
        self.check_count(seen)
    }

    /// [`History::check`] of the history at `place` of `arena`, without making the history:
    /// no `Arc` of the arena is taken. (`verify` checks every history of a snapshot this way
    /// on a second thread; an `Arc` cloned by the reader and dropped by the checker is a
    /// count both threads write, task after task.)
    pub fn check_place(arena: &Arena, place: Place) -> Result<()> {
        let bytes = arena.read(place.start, place.end)?;
        let mut seen = 0u64;
        for entry in entries(&bytes) {
            entry.map_err(|(at, reason)| damaged_entry(arena, place.start + at, reason))?;
            seen += 1;
        }
        match count_mismatch(seen, place.count) {
            Some(reason) => Err(arena.corrupt_at(place.start, reason)),
            None => Ok(()),
        }
    }

    fn check_count(&self, seen: u64) -> Result<()> {
        let Some(reason) = count_mismatch(seen, self.count) else {
            return Ok(());
        };
        Err(match self.shared() {
            Some(s) => s.arena.corrupt_at(s.start, reason),
            None => bad(reason),
        })
    }

    /// Iterates over `(lsn, from, to, event bytes)`: the shared part (`shared`, as read by
    /// [`History::shared_bytes`]), then the own part.
    fn raw_entries<'a>(
        &'a self,
        shared: &'a [u8],
    ) -> impl Iterator<Item = Result<RawEntry<'a>>> + 'a {
        let located = self.shared().map(|s| (&**s.arena, s.start));
        let shared = entries(shared).map(move |entry| {
            entry.map_err(|(at, reason)| match located {
                Some((arena, start)) => damaged_entry(arena, start + at, reason),
                None => bad(reason),
            })
        });
        let own = entries(self.own()).map(|entry| entry.map_err(|(_, reason)| bad(reason)));
        shared.chain(own)
    }

    fn shared(&self) -> Option<SharedRef<'_>> {
        match &self.parts {
            Parts::Owned(_) | Parts::InLog(_) => None,
            Parts::InSnapshot(arena, span) => Some(SharedRef {
                arena,
                start: span.start(),
                end: span.end(),
            }),
            Parts::Loaded(loaded) => Some(loaded.shared.as_ref()),
            Parts::Logged(logged) => logged.shared.as_ref().map(Shared::as_ref),
        }
    }

    /// The LSN of the last move from pending to running (the current claim), if any; `None`
    /// also when the history cannot be read.
    pub fn last_start_lsn(&self) -> Option<u64> {
        let is_start = |from: Option<TaskState>, to: Option<TaskState>| {
            from == Some(TaskState::Pending) && to == Some(TaskState::Running)
        };
        let logged = refs(self.refs())
            .filter_map(|e| e.ok())
            .filter_map(|(lsn, header, _)| {
                let (from, to) = states(header).ok()?;
                is_start(from, to).then_some(lsn)
            })
            .last();
        if logged.is_some() {
            return logged;
        }
        let shared = self.shared_bytes().ok()?;
        self.raw_entries(&shared)
            .filter_map(|e| e.ok())
            .filter(|(_, from, to, _)| is_start(*from, *to))
            .map(|(lsn, ..)| lsn)
            .last()
    }

    /// The LSN and the states before and after of every event, oldest first, without decoding
    /// any event: the entry headers, from memory or one read of the snapshot file, never from
    /// the log.
    pub fn steps(&self) -> Result<Vec<HistoryStep>> {
        let shared = self.shared_bytes()?;
        let mut out = Vec::with_capacity(self.len());
        for entry in self.raw_entries(&shared) {
            let (lsn, from, to, _) = entry?;
            out.push(HistoryStep { lsn, from, to });
        }
        for entry in refs(self.refs()) {
            let (lsn, header, _) = entry.map_err(bad)?;
            let (from, to) = states(header).map_err(bad)?;
            out.push(HistoryStep { lsn, from, to });
        }
        self.check_count(out.len() as u64)?;
        Ok(out)
    }

    /// Decodes every event of a history that does not read the log (see
    /// [`History::events_from`]).
    pub fn events(&self) -> Result<Vec<HistoryEvent>> {
        self.events_from(None)
    }

    /// Decodes every event, reading those kept in the log from `log`.
    pub fn events_from(&self, log: Option<&dyn Log>) -> Result<Vec<HistoryEvent>> {
        let shared = self.shared_bytes()?;
        let mut out = Vec::with_capacity(self.len());
        for entry in self.raw_entries(&shared) {
            let (lsn, from, to, bytes) = entry?;
            out.push(decoded(lsn, from, to, bytes)?);
        }
        if self.reads_log() {
            let log = log.ok_or_else(|| bad("history kept in the log, read without it".into()))?;
            let mut wanted = Vec::new();
            let mut lsns = Vec::new();
            for entry in refs(self.refs()) {
                let (lsn, header, len) = entry.map_err(bad)?;
                let (from, to) = states(header).map_err(bad)?;
                wanted.push((from, to, len));
                lsns.push(lsn);
            }
            let mut next = wanted.iter();
            log.read_lsns(&lsns, &mut |lsn, record| {
                let &(from, to, len) = next.next().ok_or_else(|| bad("extra record".into()))?;
                let body = match record.split_first() {
                    Some((&TAG_EVENT, body)) if body.len() == len => body,
                    _ => {
                        return Err(Error::corrupt(
                            "log",
                            None,
                            Some(lsn),
                            format!(
                                "the record at LSN {lsn} is not the {len}-byte event a history \
                                 points at"
                            ),
                        ));
                    }
                };
                out.push(decoded(lsn, from, to, body)?);
                Ok(())
            })?;
        }
        self.check_count(out.len() as u64)?;
        Ok(out)
    }
}

/// One history event from its entry's fields and event bytes.
fn decoded(
    lsn: u64,
    from: Option<TaskState>,
    to: Option<TaskState>,
    bytes: &[u8],
) -> Result<HistoryEvent> {
    let event = wire::decode_event(bytes)?;
    Ok(HistoryEvent {
        lsn,
        at: event.at,
        kind: event.kind.name(),
        from,
        to,
        actor: event.actor.clone(),
        details: details(&event.kind),
    })
}

/// Where a snapshot image leaves room for an event kept in the log: the offset of its entry
/// header, and the header itself (which holds the event's LSN and length). The writer puts
/// header and event there together, so that the events of one history, adjacent in the image,
/// can be written as one piece (the headers between them would otherwise split the writes).
#[derive(Clone, Copy, Debug)]
pub struct LoggedPlace {
    /// Where the entry header goes (the event follows it).
    pub at: usize,
    /// The entry header.
    pub header: [u8; ENTRY_HEADER_LEN],
}

impl LoggedPlace {
    /// The event's LSN.
    pub fn lsn(&self) -> u64 {
        let (lsn, _) = self.header.split_at(8);
        u64::from_le_bytes(lsn.try_into().unwrap_or_default())
    }

    /// The event's length in bytes.
    pub fn event_len(&self) -> usize {
        let (_, len) = self.header.split_at(10);
        u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize
    }
}

/// Parses positions (entry headers without bytes): `(lsn, header, event length)`.
fn refs(bytes: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8], usize), String>> {
    bytes.chunks(ENTRY_HEADER_LEN).map(|header| {
        if header.len() != ENTRY_HEADER_LEN {
            return Err("truncated history position".to_string());
        }
        states(header)?;
        let lsn = u64::from_le_bytes(
            header
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        );
        let len = u32::from_le_bytes(
            header
                .get(10..14)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default(),
        );
        Ok((lsn, header, len as usize))
    })
}

/// The `(from, to)` states of an entry header.
fn states(header: &[u8]) -> Result<(Option<TaskState>, Option<TaskState>), String> {
    let state = |b: Option<&u8>| -> Result<Option<TaskState>, String> {
        match b.copied() {
            Some(NO_STATE) | None => Ok(None),
            Some(c) => wire::v1::state_from_code(c)
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    };
    Ok((state(header.get(8))?, state(header.get(9))?))
}

/// Parses the entries of one arena slice: `Ok(entry)` or `Err((offset in the slice, reason))`,
/// after which it stops.
fn entries(bytes: &[u8]) -> impl Iterator<Item = Result<RawEntry<'_>, (usize, String)>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let at = bytes.len() - rest.len();
        let fail = |reason: &str| Some(Err((at, reason.to_string())));
        let Some((header, body)) = rest.split_at_checked(ENTRY_HEADER_LEN) else {
            rest = &[];
            return fail("truncated history entry");
        };
        let mut lsn = [0u8; 8];
        let mut len = [0u8; 4];
        lsn.copy_from_slice(header.get(..8).unwrap_or_default());
        len.copy_from_slice(header.get(10..14).unwrap_or_default());
        let len = u32::from_le_bytes(len) as usize;
        let Some((event, tail)) = body.split_at_checked(len) else {
            rest = &[];
            return fail("history entry longer than its arena");
        };
        let state = |b: Option<&u8>| -> Result<Option<TaskState>, String> {
            match b.copied() {
                Some(NO_STATE) | None => Ok(None),
                Some(c) => wire::v1::state_from_code(c)
                    .map(Some)
                    .map_err(|e| e.to_string()),
            }
        };
        match (state(header.get(8)), state(header.get(9))) {
            (Ok(from), Ok(to)) => {
                rest = tail;
                Some(Ok((u64::from_le_bytes(lsn), from, to, event)))
            }
            (Err(e), _) | (_, Err(e)) => {
                rest = &[];
                Some(Err((at, e)))
            }
        }
    })
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

/// A history entry at uncompressed byte `at` of `arena` that does not decode.
fn damaged_entry(arena: &Arena, at: usize, reason: String) -> Error {
    arena.corrupt_at(at, format!("damaged history entry: {reason}"))
}

/// Why a history of `seen` entries disagrees with the `count` its record gives, if it does.
fn count_mismatch(seen: u64, count: u32) -> Option<String> {
    (seen != u64::from(count))
        .then(|| format!("history holds {seen} events, its record says {count}"))
}

fn bad(reason: String) -> Error {
    Error::Codec {
        what: "task history".into(),
        reason,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Event, EventKind};

    fn event_bytes(id: &str, percent: u8) -> Vec<u8> {
        let event = Event {
            task_id: id.into(),
            at: Timestamp(1_700_000_000_000),
            actor: None,
            kind: EventKind::Progress {
                percent,
                step: None,
                message: None,
            },
        };
        wire::encode_event(&event).expect("should encode")
    }

    fn owned(lsns: std::ops::Range<u64>) -> History {
        let mut h = History::default();
        for lsn in lsns {
            let e = event_bytes("t", lsn as u8);
            h.push(lsn, Some(TaskState::Running), Some(TaskState::Running), &e);
        }
        h
    }

    fn bytes_of(h: &History) -> Vec<u8> {
        let mut out = Vec::new();
        h.write_to(&mut out, &mut Vec::new()).unwrap();
        out
    }

    fn arena_of(h: &History) -> Arc<Arena> {
        let bytes = bytes_of(h);
        Arena::new(Path::new("x.snap"), 1000, bytes.into())
    }

    #[test]
    fn a_shared_history_reads_like_the_owned_one_and_grows_apart() {
        let original = owned(1..4);
        let arena = arena_of(&original);
        let mut h = History::from_shared(&arena, 0, arena.len() as u64, 3).unwrap();
        assert!(
            matches!(h.parts, Parts::InSnapshot(..)),
            "unboxed until it grows"
        );
        assert_eq!(h.heap_bytes(), 0);
        assert_eq!(h.events().unwrap(), original.events().unwrap());
        assert_eq!(h.byte_len(), original.byte_len());
        let e = event_bytes("t", 9);
        h.push(4, Some(TaskState::Running), Some(TaskState::Running), &e);
        assert!(
            matches!(&h.parts, Parts::Loaded(l) if l.own.capacity() < HISTORY_BYTES_INITIAL_MIN),
            "no up-front reserve"
        );
        let mut grown = original.clone();
        grown.push(4, Some(TaskState::Running), Some(TaskState::Running), &e);
        assert_eq!(h.events().unwrap(), grown.events().unwrap());
        assert_eq!(bytes_of(&h), bytes_of(&grown));
        assert_eq!(h.last_start_lsn(), None);
        h.check().unwrap();
    }

    /// Histories in a v3 section's blocks read back whole, also those that straddle a block
    /// boundary, and reading them in order decompresses each block once (the last block is
    /// kept: reading the next history of the same block reuses it).
    #[test]
    fn histories_in_blocks_read_whole_and_reuse_the_last_block() {
        use crate::store::snapshot::blocks::{self, Blocks};
        let histories: Vec<History> = (0..3000u64).map(|i| owned(i * 3 + 1..i * 3 + 4)).collect();
        let mut raw = Vec::new();
        let mut places = Vec::new();
        for h in &histories {
            let bytes = bytes_of(h);
            places.push((raw.len() as u64, bytes.len() as u64));
            raw.extend_from_slice(&bytes);
        }
        let mut section = Blocks::section_header(raw.len() as u64).to_vec();
        section.resize(Blocks::first_block_at(raw.len() as u64) as usize, 0);
        section.extend_from_slice(&raw);
        blocks::compress_in_place(&mut section, 0, raw.len() as u64).unwrap();
        let index = Blocks::read_index(
            Path::new("x.snap"),
            64,
            section.len() as u64,
            &mut |at, buf| {
                buf.copy_from_slice(&section[at as usize..at as usize + buf.len()]);
                Ok(())
            },
        )
        .unwrap();
        let block_bytes = BLOCK_BYTES as u64;
        assert!(raw.len() as u64 > 3 * block_bytes, "several blocks");
        let arena = Arena::in_blocks(Path::new("x.snap"), 64, Ok(section.into()), index);
        let kept = |arena: &Arena| {
            let (_, last) = arena.blocks.as_ref().unwrap();
            last.lock()
                .as_ref()
                .map(|(i, block)| (*i, Arc::clone(block)))
        };
        let mut straddling = 0;
        for (h, &(start, len)) in histories.iter().zip(&places) {
            let loaded = History::from_shared(&arena, start, len, 3).unwrap();
            let before = kept(&arena);
            assert_eq!(loaded.events().unwrap(), h.events().unwrap());
            let after = kept(&arena).unwrap();
            if start / block_bytes != (start + len - 1) / block_bytes {
                straddling += 1;
            } else if let Some((i, block)) = before.filter(|(i, _)| *i == after.0) {
                assert!(
                    Arc::ptr_eq(&block, &after.1),
                    "block {i} decompressed again"
                );
            }
        }
        assert!(
            straddling >= 3,
            "{straddling} histories straddle a boundary"
        );
    }

    /// A span packs any start a snapshot can have with lengths below 2^28; a longer history
    /// is held boxed, with the same bounds.
    #[test]
    fn a_span_holds_its_bounds_or_is_refused() {
        let max_start = (SNAPSHOT_BYTES_MAX - 1) as usize;
        let max_len = (1 << SPAN_LEN_BITS) - 1;
        for (start, end) in [
            (0, 0),
            (0, max_len),
            (max_start, max_start + max_len),
            (7, 9),
        ] {
            let span = Span::new(start, end).unwrap();
            assert_eq!((span.start(), span.end()), (start, end));
        }
        assert!(Span::new(0, max_len + 1).is_none());
        assert!(Span::new(1 << 36, (1 << 36) + 1).is_none());

        let len = 1u64 << SPAN_LEN_BITS;
        let arena = Arena::new(Path::new("x.snap"), 64, vec![0u8; len as usize + 8].into());
        let mut h = History::from_shared(&arena, 8, len, 1).unwrap();
        assert!(matches!(h.parts, Parts::Loaded(_)), "too long for a span");
        assert_eq!(h.byte_len(), len as usize);
        // Boxed or not, a history with no bytes of its own keeps later events' positions.
        let running = Some(TaskState::Running);
        assert!(
            h.push_ref(u64::MAX, running, running, 10),
            "positions, not bytes"
        );
        assert!(matches!(h.parts, Parts::Logged(_)));
        assert_eq!(h.byte_len(), len as usize + ENTRY_HEADER_LEN + 10);
        let h = History::from_shared(&arena, 8, len - 1, 1).unwrap();
        assert!(matches!(h.parts, Parts::InSnapshot(..)));
        assert_eq!(h.byte_len(), len as usize - 1);
    }

    #[test]
    fn shared_bounds_are_checked_at_load() {
        let arena = arena_of(&owned(1..3));
        let len = arena.len() as u64;
        assert!(
            History::from_shared(&arena, 1, len, 2).is_err(),
            "past the end"
        );
        assert!(
            History::from_shared(&arena, u64::MAX, 2, 1).is_err(),
            "overflow"
        );
        assert!(
            History::from_shared(&arena, 0, 28, 3).is_err(),
            "count too large"
        );
        assert!(
            History::from_shared(&arena, 0, 0, 1).is_err(),
            "events without bytes"
        );
        assert!(
            History::from_shared(&arena, 0, 5, 0).is_err(),
            "bytes without events"
        );
        assert!(History::from_shared(&arena, 0, 0, 0).is_ok());
    }

    #[test]
    fn a_damaged_shared_entry_is_corruption_naming_the_file_and_offset() {
        let original = owned(1..3);
        let mut bytes = bytes_of(&original);
        let second = ENTRY_HEADER_LEN + event_bytes("t", 1).len();
        bytes[second + 9] = 7; // not a state code
        let len = bytes.len() as u64;
        let arena = Arena::new(Path::new("x.snap"), 1000, bytes.into());
        let h = History::from_shared(&arena, 0, len, 2).unwrap();
        let err = h.events().unwrap_err();
        assert!(err.is_corruption(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("x.snap") && text.contains(&(1000 + second).to_string()),
            "{text}"
        );
        // A count that disagrees with the entries is caught too.
        let arena = arena_of(&original);
        let h = History::from_shared(&arena, 0, arena.len() as u64, 1).unwrap();
        assert!(h.check().unwrap_err().is_corruption());
    }

    /// `check_place` (no history made, what `verify` runs on its second thread) gives the
    /// same verdict and the same error as `check` of the history at that place, for every
    /// byte of a history section set to each of a few values, and for counts off by one.
    #[test]
    fn checking_a_place_is_checking_its_history() {
        let clean = bytes_of(&owned(1..4));
        let (mut cases, mut refused) = (0, 0);
        for at in 0..clean.len() {
            for value in [0u8, 1, 7, 0xff] {
                let mut bytes = clean.clone();
                bytes[at] = value;
                let len = bytes.len() as u64;
                let arena = Arena::new(Path::new("x.snap"), 1000, bytes.into());
                for count in [2, 3, 4] {
                    let Ok(place) = Place::new(&arena, 0, len, count) else {
                        continue;
                    };
                    let by_place = History::check_place(&arena, place).map_err(|e| e.to_string());
                    let by_history = History::from_place(&arena, place)
                        .check()
                        .map_err(|e| e.to_string());
                    assert_eq!(by_place, by_history, "byte {at} = {value}, count {count}");
                    cases += 1;
                    refused += usize::from(by_place.is_err());
                }
            }
        }
        assert!(
            cases > 100 && refused > cases / 2,
            "{refused} of {cases} refused"
        );
        let arena = arena_of(&owned(1..4));
        let place = Place::new(&arena, 0, arena.len() as u64, 3).unwrap();
        assert!(
            History::check_place(&arena, place).is_ok(),
            "the clean history checks"
        );
    }

    /// A history of positions only (`InLog`) grows past its first room, keeps every entry in
    /// order through growth, shrinking and a snapshot's rebase, and writes the same headers
    /// (with zeros for the bytes the log holds) as before.
    #[test]
    fn a_history_kept_in_the_log_grows_shrinks_and_rebases_whole() {
        let running = Some(TaskState::Running);
        let mut h = History::default();
        // Past 24 entries the room doubles to 48 (672 bytes): enough spare for `shrink` to cut.
        let n = 4 * HISTORY_EVENTS_INITIAL as u64 + 1;
        for lsn in 1..=n {
            let from = if lsn == 1 {
                Some(TaskState::Pending)
            } else {
                running
            };
            assert!(h.push_ref(lsn, from, running, 10 + lsn as usize));
        }
        assert!(
            matches!(h.parts, Parts::InLog(_)),
            "positions only, unboxed"
        );
        assert_eq!(h.len() as u64, n);
        let expected: Vec<HistoryStep> = (1..=n)
            .map(|lsn| HistoryStep {
                lsn,
                from: if lsn == 1 {
                    Some(TaskState::Pending)
                } else {
                    running
                },
                to: running,
            })
            .collect();
        assert_eq!(h.steps().unwrap(), expected);
        assert_eq!(h.last_start_lsn(), Some(1));
        h.check().unwrap();
        let logged: usize = (1..=n)
            .map(|lsn| ENTRY_HEADER_LEN + 10 + lsn as usize)
            .sum();
        assert_eq!(h.byte_len(), logged);
        h.shrink();
        assert_eq!(
            h.heap_bytes(),
            n as usize * ENTRY_HEADER_LEN,
            "shrunk to its entries"
        );
        assert_eq!(h.steps().unwrap(), expected);
        // A snapshot wrote the first 5 events: the positions of the others stay.
        let mut written = Vec::new();
        let mut fill = Vec::new();
        h.write_to(&mut written, &mut fill).unwrap();
        assert_eq!(fill.len() as u64, n);
        let upto = fill.get(5).unwrap().at;
        let arena = Arena::new(Path::new("x.snap"), 0, written[..upto].to_vec().into());
        h.rebase(&arena, 0, upto as u64, 5).unwrap();
        assert!(
            matches!(h.parts, Parts::Logged(_)),
            "a snapshot part, then positions"
        );
        assert_eq!(h.len() as u64, n);
        let steps: Vec<u64> = h.steps().unwrap().iter().map(|s| s.lsn).collect();
        assert_eq!(steps, (1..=n).collect::<Vec<_>>());
        h.check().unwrap();
    }
}
