//! Walking the frames of one segment held in memory (a map or a copy): validation, batch
//! hold-back, and the torn-tail-versus-corruption decision.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::wal::Lsn;
use crate::wal::frame::{self, DecodeError};

use super::header::SEGMENT_HEADER_LEN;

/// How to treat a problem found in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailPolicy {
    /// A sealed (non-last) segment: every problem is corruption.
    Strict,
    /// The last segment: an incomplete or garbled tail with no valid frame after it is a torn
    /// tail, reported in [`ScanEnd::torn`]; anything else is corruption.
    Tolerate,
    /// For repair and verify: every problem, even one followed by valid data, ends the scan as
    /// if it were a torn tail, so the caller learns the last good record.
    Salvage,
}

/// A torn tail found at the end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Where the incomplete record (or unfinished batch) begins: the log is cut here.
    pub offset: u64,
    /// Non-zero bytes from `offset` to the last non-zero byte of the file.
    pub bytes: u64,
    /// Why the tail is not a record.
    pub reason: &'static str,
}

/// Where a scan stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEnd {
    /// Offset just past the last complete record (or batch) that was accepted.
    pub data_end: u64,
    /// The LSN the next record would have.
    pub next_lsn: Lsn,
    /// Records accepted (delivered or not because of `from`).
    pub records: u64,
    /// A torn tail, under [`TailPolicy::Tolerate`].
    pub torn: Option<Torn>,
}

/// What to scan and what to deliver.
#[derive(Clone, Copy, Debug)]
pub struct ScanSpec<'a> {
    /// The file, for error messages.
    pub file: &'a Path,
    /// The segment's first LSN (from its header).
    pub first_lsn: Lsn,
    /// Problem handling.
    pub policy: TailPolicy,
    /// Records with LSN below this are validated but not delivered.
    pub from: Lsn,
    /// Stop cleanly before the record with this LSN (`Lsn::MAX`: no limit).
    pub limit: Lsn,
    /// Every byte from this offset to the end of `bytes` is known to be zero (see
    /// `StorageFile::zeros_from`), so the scan need not read them to prove the end of data;
    /// `u64::MAX` when nothing is known.
    pub zeros_from: u64,
    /// Start at this frame (offset, LSN) instead of the first after the header: a frame that
    /// begins a batch, validated by an earlier scan of the same bytes in this process (a
    /// [`Marks`] entry). The bytes before it are not read, and may be zeros in `bytes`.
    pub resume: Option<(usize, Lsn)>,
    /// Where to note the batch starts this scan validates (see [`Marks`]).
    pub marks: Option<&'a std::cell::RefCell<Marks>>,
    /// CRCs another thread checks ahead of this scan (see [`Vouched`]).
    pub vouched: Option<&'a Vouched>,
}

/// Frame CRCs checked ahead of a scan by another thread ([`vouch`]), so that the scan, which
/// applies each record as it goes, does not hash it too: on two cores a replay then hashes
/// and applies at once.
///
/// What it vouches for: every frame of the chain that starts at `start` (each frame followed by
/// the one its length field points to) and ends at or below `up_to` has a header that
/// `frame::decode` accepts and a matching CRC. It says nothing of LSNs or batches, which the
/// scan still checks, and nothing of a chain from another start: a scan trusts it only while
/// it walks from the same `start` (a scan resumed elsewhere after damage hashes every frame).
#[derive(Debug)]
pub struct Vouched {
    start: usize,
    up_to: AtomicUsize,
    stop: AtomicBool,
}

/// Frames between two publications of [`Vouched::up_to`].
const VOUCH_EVERY_FRAMES: u32 = 256;

impl Vouched {
    /// Nothing vouched for yet, for the chain from byte `start`.
    pub fn new(start: usize) -> Vouched {
        Vouched {
            start,
            up_to: AtomicUsize::new(start),
            stop: AtomicBool::new(false),
        }
    }

    /// Tells [`vouch`] to stop (the scan is over).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Walks the chain of frames of `bytes` from `vouched.start`, checking each frame's header
/// and CRC, and publishes how far they hold, until a frame fails (the scan finds it again and
/// reports it), the bytes end or the scan says stop.
pub fn vouch(bytes: &[u8], vouched: &Vouched) {
    let mut pos = vouched.start;
    let mut scratch = frame::Scratch::default();
    let mut since = 0u32;
    while let Some(rest) = bytes.get(pos..)
        && let Ok((_, n)) = frame::decode_with(rest, &mut scratch)
    {
        pos += n;
        since += 1;
        if since == VOUCH_EVERY_FRAMES {
            since = 0;
            vouched.up_to.store(pos, Ordering::Release);
            if vouched.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
    vouched.up_to.store(pos, Ordering::Release);
}

/// Where batches begin in a segment, noted by the scan at open about every
/// [`Marks::EVERY_BYTES`]: (offset, LSN) of frames that begin a batch and were validated, with
/// the whole batch. A later replay from an LSN inside the segment starts at the last mark at or
/// below it instead of reading and checking the whole segment again (a snapshot open replays
/// only the records after the snapshot, often the end of a 64 MiB segment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// In ascending offset (and LSN) order.
    at: Vec<(usize, Lsn)>,
}

impl Marks {
    /// Bytes between two marks, at least.
    pub const EVERY_BYTES: usize = 1 << 20;

    /// Notes a validated batch beginning at `offset` with LSN `lsn`, if far enough past the
    /// last mark.
    fn note(&mut self, offset: usize, lsn: Lsn) {
        let far = self
            .at
            .last()
            .is_none_or(|&(last, _)| offset >= last + Self::EVERY_BYTES);
        if far {
            self.at.push((offset, lsn));
        }
    }

    /// The last mark at or below LSN `lsn`.
    pub fn at_or_below(&self, lsn: Lsn) -> Option<(usize, Lsn)> {
        let i = self.at.partition_point(|&(_, l)| l <= lsn);
        i.checked_sub(1).and_then(|i| self.at.get(i)).copied()
    }
}

impl ScanSpec<'_> {
    /// Where the bytes not known to be zero end.
    fn unknown_end(&self, bytes: &[u8]) -> usize {
        usize::try_from(self.zeros_from).map_or(bytes.len(), |z| z.min(bytes.len()))
    }
}

/// Validates every frame of `bytes` (a whole segment file, header included) and calls `visit`
/// for each record with LSN >= `spec.from`. Records of a batch are delivered only once the
/// batch's end frame has been validated.
pub fn scan_segment<F>(bytes: &[u8], spec: &ScanSpec<'_>, visit: F) -> Result<ScanEnd>
where
    F: FnMut(Lsn, &[u8]) -> Result<()>,
{
    let start = spec.resume.unwrap_or((SEGMENT_HEADER_LEN, spec.first_lsn));
    scan_segment_from(bytes, spec, start, visit)
}

/// [`scan_segment`] starting at the frame at byte `start.0`, which holds LSN `start.1` and
/// begins a batch (the first frame after the header, or one found by [`find_frame`]).
fn scan_segment_from<F>(
    bytes: &[u8],
    spec: &ScanSpec<'_>,
    start: (usize, Lsn),
    mut visit: F,
) -> Result<ScanEnd>
where
    F: FnMut(Lsn, &[u8]) -> Result<()>,
{
    let (mut pos, mut lsn) = start;
    // Records before `start` were accepted by the scan that chose it.
    let mut records = lsn.saturating_sub(spec.first_lsn);
    let note = |offset: usize, lsn: Lsn| {
        if let Some(marks) = spec.marks {
            marks.borrow_mut().note(offset, lsn);
        }
    };
    // (offset, first LSN) of a batch whose end frame has not been seen yet.
    let mut batch: Option<(usize, Lsn)> = None;
    let mut scratch = frame::Scratch::default();
    // Frames of this chain starting below `vouched_to` had their CRC checked by another thread.
    let vouched = spec.vouched.filter(|v| v.start == start.0);
    let mut vouched_to = 0usize;
    loop {
        if batch.is_none() && lsn >= spec.limit {
            break;
        }
        let rest = bytes.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            break;
        }
        if pos >= vouched_to
            && let Some(v) = vouched
        {
            vouched_to = v.up_to.load(Ordering::Acquire);
        }
        let decoded = if pos < vouched_to {
            frame::decode_vouched(rest)
        } else {
            frame::decode_with(rest, &mut scratch)
        };
        let (f, n) = match decoded {
            Ok(ok) => ok,
            Err(DecodeError::Zero)
                if all_zero(bytes.get(pos..spec.unknown_end(bytes)).unwrap_or_default()) =>
            {
                break;
            }
            Err(DecodeError::Zero) => {
                return problem(
                    bytes,
                    spec,
                    pos,
                    lsn,
                    batch,
                    "non-zero bytes after the end-of-data marker",
                    false,
                );
            }
            Err(DecodeError::Incomplete) => {
                return problem(bytes, spec, pos, lsn, batch, "incomplete record", false);
            }
            Err(DecodeError::Bad(reason)) => {
                return problem(bytes, spec, pos, lsn, batch, reason, false);
            }
        };
        if f.lsn != lsn {
            return problem(bytes, spec, pos, lsn, batch, "LSN out of sequence", true);
        }
        match (batch, f.begins_batch(), f.ends_batch()) {
            (None, true, true) => {
                if lsn >= spec.from {
                    visit(lsn, f.payload)?;
                }
                records += 1;
                note(pos, lsn);
            }
            (None, true, false) => batch = Some((pos, lsn)),
            (Some(_), false, false) => {}
            (Some((start, first)), false, true) => {
                deliver(
                    bytes.get(start..pos + n).unwrap_or_default(),
                    spec.from,
                    &mut visit,
                )?;
                records += lsn - first + 1;
                batch = None;
                note(start, first);
            }
            (None, false, _) => {
                return problem(
                    bytes,
                    spec,
                    pos,
                    lsn,
                    batch,
                    "batch record without a batch begin",
                    true,
                );
            }
            (Some(_), true, _) => {
                return problem(
                    bytes,
                    spec,
                    pos,
                    lsn,
                    batch,
                    "unfinished batch followed by another record",
                    true,
                );
            }
        }
        // NOTE: the header bounds the first LSN, but a sealed LSN from disk is never trusted
        // to have room for one more.
        lsn = lsn.checked_add(1).ok_or_else(|| {
            Error::corrupt(spec.file, Some(pos as u64), Some(lsn), "LSN overflow")
        })?;
        pos += n;
    }
    if batch.is_some() {
        return problem(
            bytes,
            spec,
            pos,
            lsn,
            batch,
            "unfinished batch at the end of data",
            false,
        );
    }
    Ok(ScanEnd {
        data_end: pos as u64,
        next_lsn: lsn,
        records,
        torn: None,
    })
}

/// True if every byte is zero. Checks 64 bytes a step (the compiler vectorises the OR), not one:
/// the tail of a preallocated segment can be tens of MiB of zeros.
fn all_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(64);
    chunks.all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
        && chunks.remainder().iter().all(|&b| b == 0)
}

/// Delivers the records of a batch whose every frame was just validated.
fn deliver<F>(bytes: &[u8], from: Lsn, visit: &mut F) -> Result<()>
where
    F: FnMut(Lsn, &[u8]) -> Result<()>,
{
    let mut pos = 0;
    while let Some((f, n)) = frame::reread(bytes.get(pos..).unwrap_or_default()) {
        if f.lsn >= from {
            visit(f.lsn, f.payload)?;
        }
        pos += n;
    }
    Ok(())
}

/// Decides between torn tail and corruption for a problem at `pos`.
fn problem(
    bytes: &[u8],
    spec: &ScanSpec<'_>,
    pos: usize,
    lsn: Lsn,
    batch: Option<(usize, Lsn)>,
    reason: &'static str,
    hard: bool,
) -> Result<ScanEnd> {
    let (cut, cut_lsn) = batch.unwrap_or((pos, lsn));
    let corrupt = || Error::corrupt(spec.file, Some(pos as u64), Some(lsn), reason);
    let salvage = spec.policy == TailPolicy::Salvage;
    // NOTE: no frame starts in the known-zero tail (its first 8 bytes would be zero), so
    // neither search below needs to read it.
    let unknown = bytes.get(..spec.unknown_end(bytes)).unwrap_or_default();
    if !salvage
        && (hard
            || spec.policy == TailPolicy::Strict
            || valid_frame_after_within(bytes, unknown.len(), pos + 1, lsn))
    {
        return Err(corrupt());
    }
    let last_nonzero = unknown.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Ok(ScanEnd {
        data_end: cut as u64,
        next_lsn: cut_lsn,
        records: cut_lsn - spec.first_lsn,
        torn: Some(Torn {
            offset: cut as u64,
            bytes: last_nonzero.saturating_sub(cut) as u64,
            reason,
        }),
    })
}

/// True if any offset from `start` up to `starts_end` (bytes from there on are known to be zero,
/// so no frame starts there) holds a frame that decodes with a good CRC and an LSN above
/// `expected` (the LSN of the bad record): then a bad record is followed by valid data, which a
/// torn write cannot produce.
///
/// NOTE: only LSNs above `expected` count. A payload may itself contain an encoded frame (a
/// log of logs, a copied record); a torn write of such a record leaves that older copy intact
/// after the damage, and it must not turn a torn tail into corruption.
fn valid_frame_after_within(bytes: &[u8], starts_end: usize, start: usize, expected: Lsn) -> bool {
    let mut p = start;
    while p + frame::FRAME_HEADER_LEN <= bytes.len() && p < starts_end {
        // A frame's first 8 bytes always hold a non-zero byte (len or !len), so skip zero runs
        // (preallocated space) instead of trying to decode at each of their offsets.
        let Some(q) = bytes
            .get(p..starts_end)
            .and_then(|r| r.iter().position(|&b| b != 0))
        else {
            return false;
        };
        p = p.max((p + q).saturating_sub(7));
        if let Some(rest) = bytes.get(p..)
            && frame::decode(rest).is_ok_and(|(f, _)| f.lsn > expected)
        {
            return true;
        }
        p += 1;
    }
    false
}

/// Where a scan that may pass over damage the caller holds another copy of stopped, and the
/// damage it passed over.
#[derive(Debug)]
pub struct CoveredScan {
    /// Where the scan stopped, as [`scan_segment`] reports it.
    pub end: ScanEnd,
    /// The damage passed over: every record it touched has an LSN at or below the covered LSN.
    pub skipped: Option<Error>,
}

/// [`scan_segment`] for a reader that holds another good copy (a snapshot) of every record up
/// to LSN `covered`, and wants only the records after it (`spec.from > covered`). Damage among
/// the covered records is then lost redundancy, not lost data: the scan finds the frame of LSN
/// `covered + 1` past it and goes on strictly from there.
///
/// NOTE: a frame is found by its CRC and its LSN, which only the real record has (segments are
/// new files, never reused, and payloads holding frames carry older LSNs). If that frame is not
/// found but a later record is, records after the snapshot are damaged: that stays an error.
/// If no record after `covered` is found at all, the segment ends at `covered` (`data_end` is
/// then unknown, so a writer must not append to it).
pub fn scan_segment_covered<F>(
    bytes: &[u8],
    spec: &ScanSpec<'_>,
    covered: Lsn,
    mut visit: F,
) -> Result<CoveredScan>
where
    F: FnMut(Lsn, &[u8]) -> Result<()>,
{
    let first = scan_segment(bytes, spec, &mut visit);
    if covered < spec.first_lsn || spec.from <= covered {
        return first.map(|end| CoveredScan { end, skipped: None });
    }
    let damage = match first {
        Ok(end) if end.next_lsn > covered || end.torn.is_none() => {
            return Ok(CoveredScan { end, skipped: None });
        }
        Ok(end) => {
            let torn = end.torn.unwrap_or(Torn {
                offset: end.data_end,
                bytes: 0,
                reason: "",
            });
            Error::corrupt(
                spec.file,
                Some(torn.offset),
                Some(end.next_lsn),
                torn.reason,
            )
        }
        Err(e) if matches!(&e, Error::Corrupt { lsn: Some(l), .. } if *l <= covered) => e,
        Err(e) => return Err(e),
    };
    let next = covered.saturating_add(1);
    let unknown_end = spec.unknown_end(bytes);
    if let Some(pos) = find_frame(bytes, unknown_end, next) {
        tracing::warn!(segment = %spec.file.display(), error = %damage,
            "damage among records a snapshot holds; reading on from LSN {next}");
        let end = scan_segment_from(bytes, spec, (pos, next), visit)?;
        return Ok(CoveredScan {
            end,
            skipped: Some(damage),
        });
    }
    if valid_frame_after_within(bytes, unknown_end, SEGMENT_HEADER_LEN, covered) {
        return Err(damage);
    }
    Ok(CoveredScan {
        end: ScanEnd {
            data_end: unknown_end as u64,
            next_lsn: next,
            records: next.saturating_sub(spec.first_lsn),
            torn: None,
        },
        skipped: Some(damage),
    })
}

/// The offset of the frame holding LSN `lsn` and beginning a batch, searching every offset after
/// the segment header that is not known to be zero.
fn find_frame(bytes: &[u8], starts_end: usize, lsn: Lsn) -> Option<usize> {
    let mut p = SEGMENT_HEADER_LEN;
    while p + frame::FRAME_HEADER_LEN <= bytes.len() && p < starts_end {
        // Zero runs hold no frame start (see `valid_frame_after_within`).
        let q = bytes
            .get(p..starts_end)
            .and_then(|r| r.iter().position(|&b| b != 0))?;
        p = p.max((p + q).saturating_sub(7));
        if let Some(rest) = bytes.get(p..)
            && frame::decode(rest).is_ok_and(|(f, _)| f.lsn == lsn && f.begins_batch())
        {
            return Some(p);
        }
        p += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::frame::{FLAGS_SINGLE, encode_into};

    /// A segment's bytes (the header left zero: a scan does not read it) holding records
    /// 1..=`n`, and where each frame starts.
    fn segment(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = vec![0u8; SEGMENT_HEADER_LEN];
        let mut starts = Vec::new();
        for lsn in 1..=n {
            starts.push(bytes.len());
            let payload: Vec<u8> = (0..40 + lsn % 90).map(|k| (lsn * 7 + k) as u8).collect();
            encode_into(&mut bytes, lsn, FLAGS_SINGLE, &payload);
        }
        (bytes, starts)
    }

    fn spec<'a>(file: &'a Path, vouched: Option<&'a Vouched>) -> ScanSpec<'a> {
        ScanSpec {
            file,
            first_lsn: 1,
            policy: TailPolicy::Strict,
            from: 1,
            limit: Lsn::MAX,
            zeros_from: u64::MAX,
            resume: None,
            marks: None,
            vouched,
        }
    }

    fn scan(bytes: &[u8], vouched: Option<&Vouched>) -> (String, Vec<Lsn>) {
        let mut seen = Vec::new();
        let end = scan_segment(bytes, &spec(Path::new("seg"), vouched), |lsn, _| {
            seen.push(lsn);
            Ok(())
        });
        (format!("{end:?}"), seen)
    }

    /// A scan that trusts a vouch delivers and reports exactly what a scan hashing every frame
    /// does, whole or with a payload byte flipped anywhere: the vouch stops before the damaged
    /// frame, and the scan hashes it itself. Would fail if `vouch` went on past a bad CRC.
    #[test]
    fn a_vouched_scan_reports_damage_as_a_hashing_scan_does() {
        let (whole, starts) = segment(2_000);
        for damaged in [None, Some(0), Some(777), Some(1_999)] {
            let mut bytes = whole.clone();
            if let Some(i) = damaged {
                bytes[starts[i] + frame::FRAME_HEADER_LEN + 3] ^= 0x40;
            }
            let vouched = Vouched::new(SEGMENT_HEADER_LEN);
            vouch(&bytes, &vouched);
            let up_to = vouched.up_to.load(Ordering::Acquire);
            match damaged {
                Some(i) => assert!(up_to <= starts[i], "vouched past damaged frame {i}"),
                None => assert_eq!(up_to, bytes.len(), "a whole segment is vouched whole"),
            }
            let hashed = scan(&bytes, None);
            assert_eq!(
                scan(&bytes, Some(&vouched)),
                hashed,
                "damaged frame {damaged:?}"
            );
            assert_eq!(hashed.1.len(), damaged.unwrap_or(2_000), "{damaged:?}");
        }
    }

    /// A vouch for a chain from another start says nothing of this one: the scan hashes every
    /// frame and still finds a damaged one, even with everything "vouched for". Would fail if
    /// the scan trusted a vouch without comparing starts.
    #[test]
    fn a_vouch_for_another_chain_is_not_trusted() {
        let (mut bytes, starts) = segment(500);
        bytes[starts[250] + frame::FRAME_HEADER_LEN] ^= 0x01;
        let vouched = Vouched::new(SEGMENT_HEADER_LEN + 1);
        vouched.up_to.store(bytes.len(), Ordering::Release);
        let (end, seen) = scan(&bytes, Some(&vouched));
        assert!(end.contains("CRC mismatch"), "{end}");
        assert_eq!(seen.len(), 250);
    }
}
