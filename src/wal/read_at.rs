//! Reading single records by LSN (`Wal::read_lsns`), for histories that keep only the
//! positions of their events (docs/design.md, "Histories on disk").
//!
//! Frames have variable length, so an LSN's offset is found through a sparse index per
//! segment: the offset of every [`MARK_EVERY`]th frame, built lazily by walking the segment's
//! frame headers in chunks the first time an LSN past what is indexed is asked for (8 bytes
//! per 32 records: 250 KB for a million records). A read then walks at most
//! `MARK_EVERY - 1` frames from the nearest mark, checking each frame's CRC and LSN. The index
//! lives only in memory and only covers frames already read once, so it is never stale: a
//! segment's written frames never change, and entries for segments that `truncate_before`
//! removed are dropped.

use std::collections::BTreeMap;

use std::sync::Arc;

use parking_lot::Mutex;

use super::Lsn;
use super::frame::{self, DecodeError, FRAME_HEADER_LEN, RECORD_BYTES_MAX};
use super::group_commit::{Core, Need, SegmentMeta};
use super::segment::SEGMENT_HEADER_LEN;
use super::storage::StorageFile;
use crate::error::{Error, Result};

/// One mark per this many frames.
const MARK_EVERY: u64 = 32;
/// Bytes read at a time while extending the marks (a larger frame is read whole).
const SCAN_CHUNK_BYTES: usize = 64 << 10;
/// Bytes read at a time from a mark to the record wanted: up to 31 small frames, then the
/// record (which is read whole if larger).
const READ_CHUNK_BYTES: usize = 8 << 10;

/// The marks of one segment.
#[derive(Debug)]
struct Marks {
    /// `offsets[i]`: where the frame with LSN `first_lsn + i * MARK_EVERY` starts.
    offsets: Vec<u64>,
    /// The next frame not yet walked: its LSN and offset.
    frontier: (Lsn, u64),
}

/// The sparse LSN -> offset index of every segment read so far, by first LSN.
#[derive(Debug, Default)]
pub struct LsnIndex {
    segments: Mutex<BTreeMap<Lsn, Marks>>,
}

/// Calls `f` with the payload of each record in `lsns` (in the order given), once all of them
/// were read: an error leaves `f` uncalled, so a caller may fall back to another way.
pub fn read_lsns(
    core: &Core,
    index: &LsnIndex,
    lsns: &[Lsn],
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<()> {
    let Some(&max) = lsns.iter().max() else {
        return Ok(());
    };
    let next = core.state.lock().next_lsn;
    if max >= next {
        return Err(Error::InvalidInput {
            at: Some("lsn".into()),
            reason: format!("LSN {max} was never written; the log ends before LSN {next}"),
        });
    }
    if !core.options.read_only {
        // The record must be in the file, not only in the commit buffer.
        core.drive(max, Need::Written)?;
    }
    let segments: Vec<SegmentMeta> = core.state.lock().segments.clone();
    let first = segments.first().map_or(next, |s| s.first_lsn);
    index.segments.lock().retain(|&k, _| k >= first);
    let mut open: Option<(Lsn, Arc<dyn StorageFile>)> = None;
    let mut read: Vec<(Lsn, Vec<u8>)> = Vec::with_capacity(lsns.len());
    for &lsn in lsns {
        if lsn < first || lsn == 0 {
            return Err(Error::InvalidInput {
                at: Some("lsn".into()),
                reason: format!("LSN {lsn} was compacted away; the log starts at LSN {first}"),
            });
        }
        let seg = segments
            .iter()
            .rev()
            .find(|s| s.first_lsn <= lsn)
            .expect("a segment starts at or below every LSN from the first one");
        if open.as_ref().is_none_or(|(at, _)| *at != seg.first_lsn) {
            // A read-only log reads through its pinned handle: a writer may have removed the
            // file since (`SegmentMeta::pinned`).
            let file = seg
                .open(&*core.storage)
                .map_err(|e| Error::io("open segment", &seg.path, e))?;
            open = Some((seg.first_lsn, file));
        }
        let (_, file) = open.as_ref().expect("opened above");
        read_one(index, seg, file.as_ref(), lsn, &mut |lsn, payload| {
            read.push((lsn, payload.to_vec()));
            Ok(())
        })?;
    }
    for (lsn, payload) in &read {
        f(*lsn, payload)?;
    }
    Ok(())
}

/// Reads record `lsn` of segment `seg`, extending its marks first if needed.
fn read_one(
    index: &LsnIndex,
    seg: &SegmentMeta,
    file: &dyn StorageFile,
    lsn: Lsn,
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<()> {
    let start = {
        let mut segments = index.segments.lock();
        let marks = segments.entry(seg.first_lsn).or_insert_with(|| Marks {
            offsets: Vec::new(),
            frontier: (seg.first_lsn, SEGMENT_HEADER_LEN as u64),
        });
        if lsn >= marks.frontier.0 {
            // NOTE: walked under the index lock: concurrent readers of the same new range wait
            // for one walk instead of each doing it.
            let (from_lsn, from_at) = marks.frontier;
            let offsets = &mut marks.offsets;
            let end = walk(
                file,
                seg,
                (from_lsn, from_at),
                lsn,
                SCAN_CHUNK_BYTES,
                &mut |at_lsn, at, _| {
                    if (at_lsn - seg.first_lsn).is_multiple_of(MARK_EVERY) {
                        offsets.push(at);
                    }
                    Ok(())
                },
            )?;
            marks.frontier = end;
        }
        let i = (lsn - seg.first_lsn) / MARK_EVERY;
        let at = usize::try_from(i)
            .ok()
            .and_then(|i| marks.offsets.get(i).copied())
            .expect("the walk above marked every MARK_EVERYth frame up to `lsn`");
        (seg.first_lsn + i * MARK_EVERY, at)
    };
    let mut found = false;
    walk(
        file,
        seg,
        start,
        lsn,
        READ_CHUNK_BYTES,
        &mut |at_lsn, _, payload| {
            if at_lsn == lsn {
                found = true;
                f(lsn, payload)?;
            }
            Ok(())
        },
    )?;
    debug_assert!(found, "the walk ends with `lsn`");
    Ok(())
}

/// Called with each frame walked: its LSN, offset and payload.
type FrameVisitor<'a> = dyn FnMut(Lsn, u64, &[u8]) -> Result<()> + 'a;

/// Walks the frames of `seg` from `(lsn, at)` through the one with LSN `until`, calling
/// `visit(lsn, offset, payload)` for each; returns the LSN and offset after the last one.
/// Only the frame `until` is decoded whole and its CRC checked (its payload is the only one
/// handed over); the frames before it are stepped over by their header (length, its check,
/// kind and LSN checked), so a read costs one CRC, not up to 32.
fn walk(
    file: &dyn StorageFile,
    seg: &SegmentMeta,
    (mut lsn, mut at): (Lsn, u64),
    until: Lsn,
    chunk: usize,
    visit: &mut FrameVisitor<'_>,
) -> Result<(Lsn, u64)> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = at;
    while lsn <= until {
        let rel = usize::try_from(at - buf_at).unwrap_or(usize::MAX);
        let rest = buf.get(rel..).unwrap_or_default();
        // The whole frame must be in the buffer before it is decoded (a short buffer of zeros
        // would read as the end of data): else read from this frame on, a chunk or the whole
        // frame if larger (its length is checked against the record limit first).
        let whole = rest.len() >= FRAME_HEADER_LEN
            && frame_len(rest).is_some_and(|n| lsn != until || n <= rest.len());
        if !whole {
            let want = match frame_len(rest) {
                Some(n) => n.max(chunk),
                None if rest.len() >= 4 => {
                    return Err(missing(
                        seg,
                        at,
                        lsn,
                        "frame length beyond the record limit",
                    ));
                }
                None => chunk,
            };
            buf.resize(want, 0);
            let n = file
                .read_full_at(&mut buf, at)
                .map_err(|e| Error::io("read", &seg.path, e))?;
            buf.truncate(n);
            buf_at = at;
            match frame_len(&buf) {
                // Whole now, or a frame larger than the chunk whose length is now known: go
                // round again (once: the next read asks for the whole frame).
                Some(len) if len <= n || (len > want && n == want) => continue,
                Some(_) => return Err(missing(seg, at, lsn, "segment ends inside the frame")),
                None if n >= 4 => {
                    return Err(missing(
                        seg,
                        at,
                        lsn,
                        "frame length beyond the record limit",
                    ));
                }
                None => return Err(missing(seg, at, lsn, "end of data")),
            }
        }
        if lsn != until {
            let len = frame_len(rest).expect("checked above");
            let field = |i: usize| {
                rest.get(i..i + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            let sane = field(0).zip(field(4)).is_some_and(|(l, c)| c == !l)
                && rest.get(8) == Some(&frame::KIND_RECORD);
            let found = rest
                .get(12..20)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            if !sane {
                return Err(missing(seg, at, lsn, "frame header does not check"));
            }
            if found != lsn {
                return Err(missing(
                    seg,
                    at,
                    lsn,
                    &format!("found LSN {found} where LSN {lsn} belongs"),
                ));
            }
            visit(lsn, at, &[])?;
            lsn += 1;
            at += len as u64;
            continue;
        }
        let (fr, used) = match frame::decode(rest) {
            Ok(decoded) => decoded,
            Err(DecodeError::Zero) => return Err(missing(seg, at, lsn, "end of data")),
            Err(DecodeError::Incomplete) => return Err(missing(seg, at, lsn, "incomplete frame")),
            Err(DecodeError::Bad(why)) => return Err(missing(seg, at, lsn, why)),
        };
        if fr.lsn != lsn {
            return Err(missing(
                seg,
                at,
                lsn,
                &format!("found LSN {} where LSN {lsn} belongs", fr.lsn),
            ));
        }
        visit(lsn, at, fr.payload)?;
        lsn += 1;
        at += used as u64;
    }
    Ok((lsn, at))
}

/// The whole length of the frame whose header starts `bytes`, if the header is there and its
/// length is within the record limit.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    (len <= RECORD_BYTES_MAX).then_some(FRAME_HEADER_LEN + len)
}

/// A record that must be at `at` (it was written and not truncated) is not.
fn missing(seg: &SegmentMeta, at: u64, lsn: Lsn, why: &str) -> Error {
    Error::corrupt(
        &seg.path,
        Some(at),
        Some(lsn),
        format!("reading record {lsn} by position: {why}"),
    )
}
