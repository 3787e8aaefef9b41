//! Snapshot formats v2 and v3 (v3 written by this build): a 64-byte header, a tasks section
//! (one record per task id, live or removed, with the offset, length and event count of its
//! history) and a history section (every history arena, back to back, in record order). Each
//! section has its own CRC in the header. The two versions differ only in the history
//! section: v2 holds the histories as they are, v3 the same bytes in compressed blocks
//! (`super::blocks`); offsets in the records are of the uncompressed histories in both.
//! Layout in `docs/format.md`.
//!
//! Loading decodes the tasks section a chunk at a time as it reads it (`window`), computing its
//! CRC as it goes, then reads the history section through for its CRC. The history bytes stay
//! in the file: every loaded [`History`] points into it (`Arena::on_disk`), so no history byte
//! is copied or parsed at open (histories are checked when they are read).

mod records;
mod sink;
mod window;

use std::path::Path;
use std::sync::Arc;

use crate::store::task_record::TaskV2;
use records::{RecordHeadV2, TASK_ABSENT, TASK_PRESENT};
pub use sink::{FileSink, Sink};
use window::{Source, Window};

use super::blocks::{self, Blocks, SECTION_HEADER_LEN};
use super::{LSN_MAX, SNAPSHOT_BYTES_MAX, codec, field, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::store::history::{Arena, LoggedPlace};
use crate::store::state::State;
use crate::wal::StorageFile;

/// The format version this module writes (it reads 2 and 3).
const VERSION_WRITTEN: u32 = 3;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// The smallest encoded task record: id length, offset, length, count and task tag, one byte
/// each. Bounds the record count read from the header before anything is reserved.
const RECORD_BYTES_MIN: u64 = 5;
/// Bytes reserved per task record when encoding (records of the W4 benchmark take ~300).
const TASK_RECORD_BYTES_GUESS: usize = 512;

const _: () = assert!(HEADER_LEN == 8 + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 4);

/// The fixed header, as read from or written to bytes 0..64.
#[derive(Debug)]
pub struct Header {
    /// 2 or 3.
    version: u32,
    /// The last LSN included.
    pub lsn: u64,
    /// Task records in the tasks section.
    pub records: u64,
    /// Bytes of the tasks section (it starts at byte 64).
    pub tasks_len: u64,
    /// Bytes of the history section as stored (it follows the tasks section).
    pub history_len: u64,
    tasks_crc: u32,
    history_crc: u32,
}

impl Header {
    /// Where the history section starts in the file.
    pub fn history_offset(&self) -> u64 {
        HEADER_LEN as u64 + self.tasks_len
    }

    fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(&super::SNAPSHOT_MAGIC); // 0: magic
        h.extend_from_slice(&self.version.to_le_bytes()); // 8: version
        h.extend_from_slice(&0u32.to_le_bytes()); // 12: flags
        h.extend_from_slice(&self.lsn.to_le_bytes()); // 16: lsn
        h.extend_from_slice(&self.records.to_le_bytes()); // 24: records
        h.extend_from_slice(&self.tasks_len.to_le_bytes()); // 32: tasks_len
        h.extend_from_slice(&self.history_len.to_le_bytes()); // 40: history_len
        h.extend_from_slice(&self.tasks_crc.to_le_bytes()); // 48: tasks_crc
        h.extend_from_slice(&self.history_crc.to_le_bytes()); // 52: history_crc
        h.extend_from_slice(&0u32.to_le_bytes()); // 56: reserved
        let crc = crc32fast::hash(&h);
        h.extend_from_slice(&crc.to_le_bytes()); // 60: header_crc
        h
    }

    /// Checks and decodes the header of a `file_len`-byte v2 or v3 file (magic and version
    /// already checked). Every length is checked against the file before anything is
    /// allocated.
    pub fn decode(path: &Path, bytes: &[u8], file_len: u64) -> Result<Header> {
        let corrupt = |at: u64, reason: String| Error::corrupt(path, Some(at), None, reason);
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(
                0,
                format!("file is {file_len} bytes, shorter than the v2 header"),
            ));
        }
        if crc32fast::hash(field(bytes, 0, 60)) != u32_at(bytes, 60) {
            return Err(corrupt(60, "header checksum mismatch".into()));
        }
        if u32_at(bytes, 12) != 0 || u32_at(bytes, 56) != 0 {
            return Err(corrupt(12, "unknown flags or reserved bits set".into()));
        }
        let h = Header {
            version: u32_at(bytes, 8),
            lsn: u64_at(bytes, 16),
            records: u64_at(bytes, 24),
            tasks_len: u64_at(bytes, 32),
            history_len: u64_at(bytes, 40),
            tasks_crc: u32_at(bytes, 48),
            history_crc: u32_at(bytes, 52),
        };
        if h.lsn > LSN_MAX {
            return Err(corrupt(16, format!("impossible LSN {}", h.lsn)));
        }
        let body = h.tasks_len.checked_add(h.history_len);
        if body.is_some_and(|b| b > SNAPSHOT_BYTES_MAX) {
            return Err(Error::TooLarge {
                what: "snapshot body",
                len: body.unwrap_or(u64::MAX),
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        if body.and_then(|b| b.checked_add(HEADER_LEN as u64)) != Some(file_len) {
            return Err(corrupt(
                32,
                format!(
                    "header says the sections are {} + {} bytes, the file holds {}",
                    h.tasks_len,
                    h.history_len,
                    file_len.saturating_sub(HEADER_LEN as u64)
                ),
            ));
        }
        if h.records > h.tasks_len / RECORD_BYTES_MIN {
            return Err(corrupt(
                24,
                format!(
                    "{} task records cannot fit in {} bytes",
                    h.records, h.tasks_len
                ),
            ));
        }
        Ok(h)
    }

    fn check_crc(&self, path: &Path, history: bool, bytes: &[u8]) -> Result<()> {
        self.check_computed_crc(path, history, crc32fast::hash(bytes))
    }

    /// Checks the tasks section's CRC, computed as it was read.
    fn check_tasks_crc(&self, path: &Path, crc: u32) -> Result<()> {
        self.check_computed_crc(path, false, crc)
    }

    fn check_computed_crc(&self, path: &Path, history: bool, crc: u32) -> Result<()> {
        let (want, at, what) = if history {
            (self.history_crc, self.history_offset(), "history section")
        } else {
            (self.tasks_crc, HEADER_LEN as u64, "tasks section")
        };
        if crc != want {
            return Err(Error::corrupt(
                path,
                Some(at),
                Some(self.lsn),
                format!("{what} checksum mismatch"),
            ));
        }
        Ok(())
    }
}

/// Where each history went in an encoded image: enough to point the in-memory histories at
/// the file once it is on disk ([`crate::store::state::State::rebase_histories`]).
#[derive(Debug, Default)]
pub struct Layout {
    /// Where the history section starts in the file.
    pub history_offset: u64,
    /// Its length in bytes, as stored.
    pub history_len: u64,
    /// `(slot, offset in the uncompressed histories, length, events)` for each task id, in
    /// file order.
    pub histories: Vec<(u32, u64, u64, u32)>,
}

/// Encodes the state as a complete v2 file image, with where each history went. Events that
/// histories keep in the log are read from `log` (one replay from the oldest of them).
pub fn encode_with_layout(
    state: &State,
    log: Option<&dyn crate::store::Log>,
) -> Result<(Vec<u8>, Layout)> {
    // One buffer for the whole file. Capacity beyond what the task records need is never
    // touched, so a generous guess costs no memory.
    let (ids, history_len) = state.entries().fold((0, 0), |(n, len), (_, e)| {
        (n + 1, len + e.history.byte_len())
    });
    let mut out = Vec::with_capacity(HEADER_LEN + ids * TASK_RECORD_BYTES_GUESS + history_len);
    let layout = encode_into(state, log, &mut out)?;
    Ok((out, layout))
}

/// Encodes the state as a v2 file image into `sink` (see `sink` for the order of the writes);
/// returns where each history went.
pub fn encode_into(
    state: &State,
    log: Option<&dyn crate::store::Log>,
    sink: &mut dyn Sink,
) -> Result<Layout> {
    let mut entries: Vec<_> = state.entries_by_slot().collect();
    entries.sort_unstable_by(|a, b| a.1.cmp(b.1));
    let history_len: u64 = entries
        .iter()
        .map(|(_, _, e)| e.history.byte_len() as u64)
        .sum();
    sink.append(&[0; HEADER_LEN])?;
    let mut tasks_crc = crc32fast::Hasher::new();
    let mut offset = 0u64;
    let mut layout = Layout {
        histories: Vec::with_capacity(entries.len()),
        ..Layout::default()
    };
    // Each record, and then each history, is built here and appended whole.
    let mut piece = Vec::new();
    for (slot, id, entry) in &entries {
        let len = entry.history.byte_len() as u64;
        layout
            .histories
            .push((*slot, offset, len, entry.history.len() as u32));
        let head = RecordHeadV2 {
            id,
            history_offset: offset,
            history_len: len,
            history_count: entry.history.len() as u32,
        };
        piece.clear();
        postcard::to_io(&head, &mut piece).map_err(encode_error)?;
        match &entry.task {
            None => piece.push(TASK_ABSENT),
            Some(held) => {
                piece.push(TASK_PRESENT);
                match held.record() {
                    // A terminal task's record is written as the state holds it.
                    Some(record) => piece.extend_from_slice(record),
                    None => TaskV2::encode_into(&held.get(id), &mut piece),
                }
            }
        }
        tasks_crc.update(&piece);
        sink.append(&piece)?;
        offset += len;
    }
    let mut request_ids: Vec<(&str, &str)> = state
        .request_ids
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    request_ids.sort_unstable();
    let mut closed_sessions: Vec<u64> = state.closed_sessions.iter().copied().collect();
    closed_sessions.sort_unstable();
    piece.clear();
    postcard::to_io(&(request_ids, closed_sessions), &mut piece).map_err(encode_error)?;
    tasks_crc.update(&piece);
    sink.append(&piece)?;

    let tasks_len = sink.len() - HEADER_LEN as u64;
    let history_start = sink.len();
    // The section header and room for the block index, then the histories uncompressed,
    // completed from the log, then compressed where they lie (`blocks::compress_in_place`).
    sink.append(&Blocks::section_header(history_len))?;
    let mut index_left = Blocks::first_block_at(history_len) - SECTION_HEADER_LEN as u64;
    let zeros = vec![0u8; index_left.min(1 << 16) as usize];
    while index_left > 0 {
        let n = index_left.min(zeros.len() as u64);
        sink.append(zeros.get(..n as usize).unwrap_or_default())?;
        index_left -= n;
    }
    let mut fill = Vec::new();
    for (_, _, entry) in &entries {
        let (base, first_fill) = (sink.len(), fill.len());
        piece.clear();
        entry.history.write_to(&mut piece, &mut fill)?;
        // `write_to` names places in `piece`; the fills need places in the image.
        for f in fill.get_mut(first_fill..).unwrap_or_default() {
            f.at += usize::try_from(base).map_err(|_| codec("image too large".into()))?;
        }
        sink.append(&piece)?;
    }
    drop(piece);
    fill_from_log(sink, fill, log)?;
    sink.flush()?;
    let stored_len = blocks::compress_in_place(sink, history_start, history_len)?;
    let header = Header {
        version: VERSION_WRITTEN,
        lsn: state.applied_lsn,
        records: entries.len() as u64,
        tasks_len,
        history_len: stored_len,
        tasks_crc: tasks_crc.finalize(),
        history_crc: sink.crc_from(history_start)?,
    };
    debug_assert_eq!(sink.len(), header.history_offset() + stored_len);
    sink.patch(0, &header.encode())?
        .ok_or_else(|| codec("the image lost its header placeholder".into()))?;
    sink.flush()?;
    layout.history_offset = header.history_offset();
    layout.history_len = stored_len;
    Ok(layout)
}

/// Copies the events that histories keep in the log into their places in the image, each
/// with its entry header (so that the events of one history go out as one piece): `write_to`
/// left room of the event's length after each header. One sequential replay from the oldest
/// LSN wanted, rather than a read per event.
fn fill_from_log(
    sink: &mut dyn Sink,
    mut fill: Vec<LoggedPlace>,
    log: Option<&dyn crate::store::Log>,
) -> Result<()> {
    if fill.is_empty() {
        return Ok(());
    }
    let log = log.ok_or_else(|| codec("histories kept in the log, encoded without it".into()))?;
    fill.sort_unstable_by_key(LoggedPlace::lsn);
    let mut next = fill.iter().peekable();
    let from = fill.first().map_or(0, LoggedPlace::lsn);
    log.replay(from, &mut |lsn, record| {
        while let Some(&&place) = next.peek() {
            let want = place.lsn();
            if want > lsn {
                break;
            }
            next.next();
            let body = record
                .split_first()
                .filter(|(tag, body)| {
                    **tag == crate::store::record::TAG_EVENT && body.len() == place.event_len()
                })
                .map(|(_, body)| body);
            let at = place.at as u64;
            let placed = match (want == lsn, body) {
                (true, Some(body)) => sink
                    .patch(at, &place.header)?
                    .and(sink.patch(at + place.header.len() as u64, body)?),
                _ => None,
            };
            if placed.is_none() {
                return Err(Error::corrupt(
                    "log",
                    None,
                    Some(want),
                    "the record a history points at is missing or not its event",
                ));
            }
        }
        Ok(())
    })?;
    if let Some(place) = next.next() {
        return Err(Error::corrupt(
            "log",
            None,
            Some(place.lsn()),
            "a history points past the end of the log",
        ));
    }
    Ok(())
}

/// Reads a v2 file whose first bytes (`prefix`, the header) were read already. The history
/// section's CRC is checked by streaming it through a small buffer, on a second thread while
/// this one decodes the tasks section (both CRCs are checked before anything decoded is used);
/// the histories then stay on disk and are read from `file` when asked for (see [`Arena`]).
pub fn read(
    path: &Path,
    file: Box<dyn StorageFile>,
    prefix: &[u8],
    file_len: u64,
) -> Result<State> {
    read_with(
        path,
        file,
        prefix,
        file_len,
        |path, h, window, arena, checked| records::decode(path, h, window, arena, checked),
    )
}

/// [`read`], but nothing is built: each record's id and state go to `visit`, and every
/// history is checked (`records::visit`, what `verify` keeps of a snapshot). Returns the
/// snapshot's LSN.
pub fn read_visiting(
    path: &Path,
    file: Box<dyn StorageFile>,
    prefix: &[u8],
    file_len: u64,
    visit: &mut super::TaskVisit<'_>,
) -> Result<u64> {
    read_with(
        path,
        file,
        prefix,
        file_len,
        |path, h, window, arena, checked| {
            records::visit(path, h, window, arena, checked, visit).map(|()| h.lsn)
        },
    )
}

/// What [`read`] and [`read_visiting`] share: the header, the history section's index and its
/// CRC checked on a second thread while `decode` reads the tasks section.
fn read_with<T>(
    path: &Path,
    file: Box<dyn StorageFile>,
    prefix: &[u8],
    file_len: u64,
    decode: impl FnOnce(
        &Path,
        &Header,
        Window<'_>,
        &Arc<Arena>,
        &mut dyn FnMut() -> Result<()>,
    ) -> Result<T>,
) -> Result<T> {
    let h = Header::decode(path, prefix, file_len)?;
    let arena = match h.version {
        2 => Arena::on_disk(path, h.history_offset(), h.history_len, file),
        _ => match read_index(path, file.as_ref(), h.history_offset(), h.history_len) {
            Ok(blocks) => Arena::in_blocks(path, h.history_offset(), Err(file), blocks),
            // A section that fails its CRC is reported as such, whatever its index says.
            Err(e) => {
                let crc = check_section_streaming(path, file.as_ref(), &h);
                return Err(crc.err().unwrap_or(e));
            }
        },
    };
    let file = arena
        .disk_file()
        .expect("an arena made on disk reads its file");
    let source = Source::File {
        file,
        at: HEADER_LEN as u64,
    };
    let window = Window::new(path, source, h.tasks_len, window::CHUNK_BYTES);
    let h = &h;
    std::thread::scope(|scope| {
        // NOTE: the history section can be most of the file (every task's whole history):
        // reading and hashing it beside the decoding takes it off an open's path on two cores
        // (docs/benchmarks.md). Without a thread (spawning failed) it is checked here. When the
        // tasks section fails first, the open still waits for this read (an error path).
        let history = std::thread::Builder::new()
            .name("tasklog-snapshot-crc".into())
            .spawn_scoped(scope, || check_section_streaming(path, file, h));
        let mut history = Some(history);
        let mut history_checked = || match history.take() {
            // A panic there is one here, as if the check had run here.
            Some(Ok(checking)) => checking
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Some(Err(_)) => check_section_streaming(path, file, h),
            None => Ok(()),
        };
        decode(path, h, window, &arena, &mut history_checked)
    })
}

/// Reads the block index of the v3 history section of `stored_len` bytes at `section_at` of
/// `file`.
pub fn read_index(
    path: &Path,
    file: &dyn StorageFile,
    section_at: u64,
    stored_len: u64,
) -> Result<Blocks> {
    Blocks::read_index(path, section_at, stored_len, &mut |at, buf| {
        let offset = section_at + at;
        let done = file
            .read_full_at(buf, offset)
            .map_err(|e| Error::io("read", path, e))?;
        if done < buf.len() {
            return Err(Error::corrupt(
                path,
                Some(offset + done as u64),
                None,
                "snapshot file ended inside its history index (was it truncated?)",
            ));
        }
        Ok(())
    })
}

/// Checks the history section's CRC without holding it in memory (read through a window, as
/// the tasks section is).
fn check_section_streaming(path: &Path, file: &dyn StorageFile, h: &Header) -> Result<()> {
    let source = Source::File {
        file,
        at: h.history_offset(),
    };
    let crc = Window::new(path, source, h.history_len, window::CHUNK_BYTES).finish_crc()?;
    h.check_computed_crc(path, true, crc)
}

/// Decodes a whole v2 image held in memory (the history section is copied into an arena).
pub fn decode(path: &Path, image: &[u8]) -> Result<State> {
    let h = Header::decode(path, image, image.len() as u64)?;
    let (tasks, history) = image
        .get(HEADER_LEN..)
        .and_then(|body| body.split_at_checked(h.tasks_len as usize))
        .expect("should hold both sections: the header's lengths were checked");
    h.check_crc(path, false, tasks)?;
    h.check_crc(path, true, history)?;
    let arena = match h.version {
        2 => Arena::new(path, h.history_offset(), history.into()),
        _ => {
            let mut read = |at: u64, buf: &mut [u8]| {
                // Inside the section: `read_index` checks its counts against it first.
                let bytes = usize::try_from(at)
                    .ok()
                    .and_then(|at| history.get(at..at.checked_add(buf.len())?))
                    .ok_or_else(|| codec(format!("history index read past the section at {at}")))?;
                buf.copy_from_slice(bytes);
                Ok(())
            };
            let blocks = Blocks::read_index(path, h.history_offset(), h.history_len, &mut read)?;
            Arena::in_blocks(path, h.history_offset(), Ok(history.into()), blocks)
        }
    };
    // Small chunks, so that tests and fuzzing cross a chunk's end inside records of every
    // shape (a snapshot open reads `window::CHUNK_BYTES` at a time).
    let window = Window::new(path, Source::Memory(tasks), h.tasks_len, IMAGE_CHUNK_BYTES);
    records::decode(path, &h, window, &arena, || Ok(()))
}

/// Bytes of the tasks section an image in memory is decoded from at a time.
const IMAGE_CHUNK_BYTES: usize = 61;

fn encode_error(e: postcard::Error) -> Error {
    codec(format!("encoding: {e}"))
}

/// Recomputes the CRCs of a v2 image in place when its lengths add up (fuzzing: reach the
/// section decoders with damaged content).
pub fn reseal(image: &mut [u8]) {
    if image.len() < HEADER_LEN {
        return;
    }
    let tasks_len = u64_at(image, 32);
    let Some((header, body)) = image.split_at_mut_checked(HEADER_LEN) else {
        return;
    };
    let Some((tasks, history)) = usize::try_from(tasks_len)
        .ok()
        .and_then(|n| body.split_at_checked(n))
    else {
        return;
    };
    let crcs = [crc32fast::hash(tasks), crc32fast::hash(history)];
    for (at, crc) in [(48, crcs[0]), (52, crcs[1])] {
        if let Some(f) = header.get_mut(at..at + 4) {
            f.copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(header.get(..60).unwrap_or_default());
    if let Some(f) = header.get_mut(60..64) {
        f.copy_from_slice(&crc.to_le_bytes());
    }
}
