//! Opening a log: lock, list segments, check headers and their chain, scan the last segment and
//! cut a torn tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::group_commit::{Core, SegmentMeta, State};
use super::segment::writer::{ActiveSegment, create_segment};
use super::segment::{
    LSN_SANE_MAX, Marks, SEGMENT_HEADER_LEN, ScanEnd, ScanSpec, SegmentHeader, TailPolicy,
    parse_segment_name, scan_segment_covered,
};
use super::storage::{FileBytes, OpenMode, Storage, StorageFile};
use super::{Lsn, OpenReport, WalOptions};
use crate::error::{Error, Result};

/// The largest `segment_bytes_max` accepted (1 TiB): a sanity bound on the option.
pub const SEGMENT_BYTES_MAX_LIMIT: u64 = 1 << 40;
/// The smallest: room for a header and one small record.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// The most segments a read-only log keeps open (`pin_segments`): one file descriptor each,
/// well inside the common limit of 1,024 per process. At the default segment size that is a
/// 16 GiB log; a longer one is read by path.
pub const PINNED_SEGMENTS_MAX: usize = 256;

/// The lock file inside the log directory.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("LOCK")
}

/// Segment files of `dir`, sorted by first LSN.
pub fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let entries = storage
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut segs: Vec<(Lsn, PathBuf)> = entries
        .into_iter()
        .filter_map(|p| parse_segment_name(&p).map(|lsn| (lsn, p)))
        .collect();
    segs.sort();
    Ok(segs)
}

/// Reads and checks the header of a segment, and that it matches its file name.
pub fn read_header(file: &dyn StorageFile, path: &Path, name_lsn: Lsn) -> Result<SegmentHeader> {
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let done = file
        .read_full_at(&mut buf, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let header = SegmentHeader::decode(buf.get(..done).unwrap_or_default(), path)?;
    if header.first_lsn != name_lsn {
        return Err(Error::corrupt(
            path,
            Some(16),
            Some(header.first_lsn),
            "first LSN differs from the file name",
        ));
    }
    Ok(header)
}

/// True if the segment can hold no record because its creation did not finish: shorter than a
/// header (a torn header write at a roll), or a header that is zero or torn (its CRC does not
/// match) with nothing but zeros after it. A writer puts records in a segment only after its
/// header was fsynced, so such a file never held an acknowledged record.
///
/// IMPORTANT: a damaged header in front of records is damage, not an unfinished roll, and must
/// not be deleted here (`check_chain` reports it); so is a whole header (good CRC) that says
/// something impossible.
fn header_unfinished(file: &dyn StorageFile, path: &Path) -> Result<bool> {
    let len = file.len().map_err(|e| Error::io("stat segment", path, e))?;
    if len < SEGMENT_HEADER_LEN as u64 {
        return Ok(true);
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    file.read_full_at(&mut header, 0)
        .map_err(|e| Error::io("read segment header", path, e))?;
    let (body, crc) = header.split_at(SEGMENT_HEADER_LEN - 4);
    if crc32fast::hash(body).to_le_bytes() == crc {
        return Ok(false);
    }
    let all = file
        .read_all()
        .map_err(|e| Error::io("read segment", path, e))?;
    Ok(all
        .get(SEGMENT_HEADER_LEN..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == 0))
}

/// True if the last segment is one a writer may still be creating: shorter than a header or
/// zero throughout. Read-only opens and `verify` ignore it; they take no lock and may look
/// while `create_segment` runs.
///
/// NOTE: a writer writes records to a segment only after its header was fsynced, so such a
/// file holds no record; reporting it as corruption would fail readers for no loss.
pub fn last_not_yet_written(storage: &dyn Storage, segs: &[(Lsn, PathBuf)]) -> Result<bool> {
    let Some((_, path)) = segs.last() else {
        return Ok(false);
    };
    let file = match storage.open(path, OpenMode::Read) {
        Ok(f) => f,
        // Gone already (a writer removing an unfinished segment): nothing to read either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io("open segment", path, e)),
    };
    let len = file.len().map_err(|e| Error::io("stat segment", path, e))?;
    if len < SEGMENT_HEADER_LEN as u64 {
        tracing::info!(segment = %path.display(), len, "ignoring a last segment still being created");
        return Ok(true);
    }
    header_unfinished(&*file, path)
}

/// Checks that headers chain: each segment names its predecessor's first LSN.
///
/// With `covered > 0` (the caller holds a good snapshot of every record up to that LSN), a
/// segment wholly below it whose header is damaged, or after which the chain breaks, is lost
/// redundancy: it and every segment before it leave `segs` (they stay on disk for `repair`),
/// and the damage is listed in `report.covered_damage`.
fn check_chain(
    storage: &dyn Storage,
    segs: &mut Vec<(Lsn, PathBuf)>,
    covered: Lsn,
    report: &mut OpenReport,
) -> Result<()> {
    let mut prev: Option<Lsn> = None;
    let mut keep_from = 0;
    for (i, (name_lsn, path)) in segs.iter().enumerate() {
        // Wholly covered: the next segment's name says where this one's records end.
        let wholly_covered = |j: usize| {
            covered > 0
                && segs
                    .get(j + 1)
                    .is_some_and(|(next, _)| *next <= covered.saturating_add(1))
        };
        let header = storage
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", path, e))
            .and_then(|file| read_header(&*file, path, *name_lsn));
        let header = match header {
            Ok(h) => h,
            Err(e) if e.is_corruption() && wholly_covered(i) => {
                tracing::warn!(segment = %path.display(), error = %e, "damaged segment wholly covered by a snapshot: lost redundancy, not data");
                report.covered_damage.push((path.clone(), e.to_string()));
                keep_from = i + 1;
                prev = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(p) = prev
            && header.prev_first_lsn != p
        {
            let e = Error::corrupt(
                path,
                Some(24),
                Some(header.first_lsn),
                format!(
                    "missing segment: this one follows the segment starting at LSN {}, but the previous file starts at {p}",
                    header.prev_first_lsn
                ),
            );
            if i > 0 && wholly_covered(i - 1) {
                // The records missing between the two all lie below the snapshot.
                tracing::warn!(segment = %path.display(), error = %e, "gap in the log below a snapshot: lost redundancy, not data");
                report.covered_damage.push((path.clone(), e.to_string()));
                keep_from = i;
            } else {
                return Err(e);
            }
        }
        prev = Some(header.first_lsn);
    }
    segs.drain(..keep_from);
    Ok(())
}

/// Options sanity.
fn check_options(options: &WalOptions) -> Result<()> {
    let m = options.segment_bytes_max;
    if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX_LIMIT).contains(&m) {
        return Err(Error::InvalidInput {
            at: Some("segment_bytes_max".into()),
            reason: format!("{m} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX_LIMIT}"),
        });
    }
    Ok(())
}

/// Scans the last segment, noting where its batches begin (for a writer: see `Marks`).
/// Read-only opens re-read a few times, because a writer may be in the middle of a write and a
/// copy can catch later pages before earlier ones.
fn scan_last(
    file: &dyn StorageFile,
    path: &Path,
    first_lsn: Lsn,
    read_only: bool,
    covered: Lsn,
) -> Result<(ScanEnd, Option<Error>, Marks)> {
    let marks = std::cell::RefCell::new(Marks::default());
    let mut spec = ScanSpec {
        file: path,
        first_lsn,
        policy: TailPolicy::Tolerate,
        from: Lsn::MAX,
        limit: Lsn::MAX,
        zeros_from: u64::MAX,
        resume: None,
        marks: (!read_only).then_some(&marks),
        vouched: None,
    };
    let mut attempts = 0;
    loop {
        let bytes = if read_only {
            let bytes = file
                .read_all()
                .map_err(|e| Error::io("read segment", path, e))?;
            // NOTE: asked after the copy: whatever a writer in another process had appended
            // by then is data to the file system too, so no byte of the copy is wrongly
            // taken for zero.
            spec.zeros_from = file
                .zeros_from()
                .map_err(|e| Error::io("find the end of data", path, e))?;
            bytes
        } else {
            // The last segment is the active one: copied, never mapped (see
            // `storage::map_file`). A writer holds the lock, so asking where the data ends
            // first is safe, and the unwritten preallocated tail is never read.
            spec.zeros_from = file
                .zeros_from()
                .map_err(|e| Error::io("find the end of data", path, e))?;
            file.read_prefix(spec.zeros_from)
                .map_err(|e| Error::io("read segment", path, e))?
        };
        let bytes = FileBytes::Owned(bytes);
        // NOTE: `from` is past every LSN here, so nothing is delivered and damage at or below
        // `covered` may be passed over (see `scan_segment_covered`).
        match scan_segment_covered(&bytes, &spec, covered, |_, _| Ok(())) {
            Err(e) if read_only && attempts < 3 && e.is_corruption() => attempts += 1,
            Err(e) => return Err(e),
            Ok(scan) => return Ok((scan.end, scan.skipped, marks.into_inner())),
        }
    }
}

/// Opens (or creates) the log in `dir`.
///
/// `covered`: the caller holds a good copy (a snapshot) of every record up to this LSN, so
/// damage wholly among those records does not stop the open (0: none; see `check_chain` and
/// `open_last`).
pub fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    options: WalOptions,
    covered: Lsn,
) -> Result<(Arc<Core>, OpenReport)> {
    check_options(&options)?;
    let read_only = options.read_only;
    let mut lock = None;
    if !read_only {
        super::storage::create_dir_durable(&*storage, dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        let lock_file = lock_path(dir);
        lock = Some(super::lock::acquire(
            &*storage,
            dir,
            &lock_file,
            options.lock_timeout,
        )?);
        // Make earlier creates and removes durable before trusting what we list.
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
        // A staging segment left by an interrupted import was never part of the log: delete
        // it (read-only opens just ignore it, as they ignore every name but `<20 digits>.seg`).
        super::staging::remove_leftovers(&*storage, dir)?;
    }
    let mut segs = list_segments(&*storage, dir)?;
    let mut report = OpenReport::default();
    // A new log starts at LSN 1; a log whose only segment was never finished restarts at that
    // segment's first LSN (nothing in it was ever written, let alone synced).
    let mut first = 1;
    // Whether the last segment's bytes were already synced and evicted from the cache (by
    // `drop_unfinished_last`, which kept that segment): `open_last` need not do it again.
    let mut last_from_disk = false;
    if !read_only {
        match drop_unfinished_last(&*storage, dir, &mut segs, &mut report)? {
            Some(lsn) => first = lsn,
            None => last_from_disk = !segs.is_empty(),
        }
    }
    if read_only && last_not_yet_written(&*storage, &segs)? {
        segs.pop();
    }
    check_chain(&*storage, &mut segs, covered, &mut report)?;
    let (state, active) = match segs.last() {
        None if read_only => (
            State::new(1, (1, SEGMENT_HEADER_LEN as u64), Vec::new(), 0),
            None,
        ),
        None => {
            let header = SegmentHeader {
                first_lsn: first,
                prev_first_lsn: 0,
                segment_bytes_max: options.segment_bytes_max,
            };
            let active = create_segment(&*storage, dir, header, options.preallocate)?;
            let meta = vec![SegmentMeta::new(first, active.path.clone())];
            let st = State::new(
                first,
                (first, SEGMENT_HEADER_LEN as u64),
                meta,
                SEGMENT_HEADER_LEN as u64,
            );
            (st, Some(active))
        }
        Some((last_lsn, last_path)) => open_last(
            &*storage,
            &segs,
            (*last_lsn, last_path),
            &options,
            covered,
            last_from_disk,
            &mut report,
        )?,
    };
    let mut state = state;
    state.lock = lock;
    report.segments = state.segments.len();
    report.first_lsn = state
        .segments
        .first()
        .map_or(state.next_lsn, |s| s.first_lsn);
    report.next_lsn = state.next_lsn;
    let core = Arc::new(Core {
        storage,
        dir: dir.to_path_buf(),
        options,
        state: parking_lot::Mutex::new(state),
        cond: parking_lot::Condvar::new(),
        writer: parking_lot::Mutex::new(active),
        poison_flag: std::sync::atomic::AtomicBool::new(false),
        counters: Default::default(),
        background: parking_lot::Mutex::new(None),
        flusher: parking_lot::Mutex::new(None),
        flush_requests: std::sync::OnceLock::new(),
        covered_lsn: covered,
        covered_seen: parking_lot::Mutex::new(report.covered_damage.clone()),
    });
    Ok((core, report))
}

/// Removes a last segment whose header never reached the disk (a crash while creating it:
/// records go to a segment only after its header was fsynced, so it holds none). Returns the
/// removed segment's first LSN.
fn drop_unfinished_last(
    storage: &dyn Storage,
    dir: &Path,
    segs: &mut Vec<(Lsn, PathBuf)>,
    report: &mut OpenReport,
) -> Result<Option<Lsn>> {
    let Some((lsn, path)) = segs.last() else {
        return Ok(None);
    };
    let lsn = *lsn;
    // NOTE: a new log would start at this name's LSN: bound it like a header's first LSN.
    if lsn == 0 || lsn > LSN_SANE_MAX {
        return Err(Error::corrupt(
            path,
            None,
            Some(lsn),
            "segment file name: absurd first LSN",
        ));
    }
    // Opened to write: fsync needs it on some systems (Windows), and only writers get here.
    let file = storage
        .open(path, OpenMode::ReadWrite)
        .map_err(|e| Error::io("open segment", path, e))?;
    // IMPORTANT: judge the header the disk holds, not the page cache's (see `open_last`): a
    // roll whose fsync of the new segment failed leaves its header cached as clean while the
    // disk has zeros, and a header taken as finished here would then read as bad magic there.
    let io = |op| move |e| Error::io(op, path, e);
    file.sync_data().map_err(io("fsync"))?;
    file.drop_cache().map_err(io("drop cached pages"))?;
    if header_unfinished(&*file, path)? {
        let len = file.len().unwrap_or(0);
        tracing::warn!(segment = %path.display(), "removing a last segment whose creation never finished (no complete header, no records)");
        storage
            .remove_file(path)
            .map_err(|e| Error::io("remove segment", path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| Error::io("fsync directory", dir, e))?;
        report.torn_at = Some((path.clone(), 0));
        report.torn_bytes_cut = len;
        segs.pop();
        return Ok(Some(lsn));
    }
    Ok(None)
}

/// Scans the last segment, cuts a torn tail (writers only), and builds the state.
fn open_last(
    storage: &dyn Storage,
    segs: &[(Lsn, PathBuf)],
    (first_lsn, path): (Lsn, &PathBuf),
    options: &WalOptions,
    covered: Lsn,
    cache_dropped: bool,
    report: &mut OpenReport,
) -> Result<(State, Option<ActiveSegment>)> {
    let mode = if options.read_only {
        OpenMode::Read
    } else {
        OpenMode::ReadWrite
    };
    let file: Arc<dyn StorageFile> = Arc::from(
        storage
            .open(path, mode)
            .map_err(|e| Error::io("open segment", path, e))?,
    );
    if !options.read_only && !cache_dropped {
        // IMPORTANT: never trust the page cache for the tail. After a failed fsync (here or in
        // an earlier process of this boot) Linux keeps the unwritten bytes cached as clean
        // pages while the disk holds the old ones: reading them would revive records that a
        // power cut then takes back. Flush what is dirty, evict the cache, read from disk.
        // Sealed segments were fsynced successfully when the log rolled past them.
        let io = |op| move |e| Error::io(op, path, e);
        file.sync_data().map_err(io("fsync"))?;
        file.drop_cache().map_err(io("drop cached pages"))?;
    }
    let (end, skipped, marks) = scan_last(&*file, path, first_lsn, options.read_only, covered)?;
    if let Some(torn) = &end.torn {
        if options.read_only {
            tracing::info!(segment = %path.display(), offset = torn.offset, "read-only open stops at an incomplete tail");
        } else {
            tracing::warn!(segment = %path.display(), offset = torn.offset, bytes = torn.bytes, reason = torn.reason,
                "cutting a torn tail from the last segment");
            let io = |op| move |e| Error::io(op, path, e);
            file.set_len(torn.offset)
                .map_err(io("truncate torn tail"))?;
            file.sync_all().map_err(io("fsync"))?;
            report.torn_bytes_cut = torn.bytes;
            report.torn_at = Some((path.clone(), torn.offset));
        }
    }
    if let Some(damage) = &skipped {
        report
            .covered_damage
            .push((path.clone(), damage.to_string()));
    }
    if !options.read_only && skipped.is_some() {
        // IMPORTANT: never append behind damage: the segment is sealed as it is (its end may
        // not even be known) and the log goes on in a new one, so that a later snapshot can
        // cover the damaged segment whole and `repair` or compaction can take it away.
        return roll_past_damage(storage, segs, (first_lsn, path), options, end, report);
    }
    let mut reserved_to = 0;
    if !options.read_only && options.preallocate {
        let io = |op| move |e| Error::io(op, path, e);
        // NOTE: a segment that already has its full size (the usual case) needs neither: an
        // fsync of the unchanged file is pure latency on every open.
        let before = file.len().map_err(io("stat segment"))?;
        reserved_to =
            super::segment::writer::reserve(&*file, end.data_end, options.segment_bytes_max)
                .map_err(io("preallocate segment"))?;
        if file.len().map_err(io("stat segment"))? != before {
            file.sync_all().map_err(io("fsync"))?;
        }
    }
    let mut log_bytes = end.data_end;
    for (_, p) in segs.iter().take(segs.len().saturating_sub(1)) {
        if let Ok(f) = storage.open(p, OpenMode::Read) {
            log_bytes += f.len().unwrap_or(0);
        }
    }
    let metas = if options.read_only {
        pin_segments(storage, segs)
    } else {
        let mut metas: Vec<SegmentMeta> = segs
            .iter()
            .map(|(l, p)| SegmentMeta::new(*l, p.clone()))
            .collect();
        // NOTE: only with no damage passed over (this path) and after any torn tail was cut:
        // every mark is a batch the scan validated, all before the data's end.
        if let Some(last) = metas.last_mut() {
            last.marks = Some(Arc::new(marks));
        }
        metas
    };
    let state = State::new(end.next_lsn, (first_lsn, end.data_end), metas, log_bytes);
    let active = (!options.read_only).then(|| ActiveSegment {
        file,
        first_lsn,
        path: path.clone(),
        reserved_to,
    });
    Ok((state, active))
}

/// A read-only log's segments, each with its handle kept open (`SegmentMeta::pinned`), so that
/// what this reader replays and later reads by LSN stays readable when a writer removes
/// segments. All or none: with more than [`PINNED_SEGMENTS_MAX`] segments, or one that cannot
/// be opened (a writer removed it since the listing), none is pinned and every segment is read
/// by its path, as a writer's are ([`Wal::pins_segments`](super::Wal::pins_segments) says which).
fn pin_segments(storage: &dyn Storage, segs: &[(Lsn, PathBuf)]) -> Vec<SegmentMeta> {
    let unpinned = || {
        segs.iter()
            .map(|(l, p)| SegmentMeta::new(*l, p.clone()))
            .collect()
    };
    if segs.len() > PINNED_SEGMENTS_MAX {
        return unpinned();
    }
    let mut metas = Vec::with_capacity(segs.len());
    for (l, p) in segs {
        let Ok(file) = storage.open(p, OpenMode::Read) else {
            return unpinned();
        };
        metas.push(SegmentMeta {
            first_lsn: *l,
            path: p.clone(),
            pinned: Some(Arc::from(file)),
            marks: None,
        });
    }
    metas
}

/// Opens a writer on a new segment after a last segment whose covered part is damaged.
fn roll_past_damage(
    storage: &dyn Storage,
    segs: &[(Lsn, PathBuf)],
    (first_lsn, path): (Lsn, &PathBuf),
    options: &WalOptions,
    end: ScanEnd,
    report: &mut OpenReport,
) -> Result<(State, Option<ActiveSegment>)> {
    let header = SegmentHeader {
        first_lsn: end.next_lsn,
        prev_first_lsn: first_lsn,
        segment_bytes_max: options.segment_bytes_max,
    };
    tracing::warn!(segment = %path.display(), next_lsn = end.next_lsn, "sealing a segment with covered damage; the log goes on in a new segment");
    let active = {
        let dir = path.parent().unwrap_or(Path::new("."));
        create_segment(storage, dir, header, options.preallocate)?
    };
    let mut log_bytes = SEGMENT_HEADER_LEN as u64;
    for (_, p) in segs {
        if let Ok(f) = storage.open(p, OpenMode::Read) {
            log_bytes += f.len().unwrap_or(0);
        }
    }
    let mut metas: Vec<SegmentMeta> = segs
        .iter()
        .map(|(l, p)| SegmentMeta::new(*l, p.clone()))
        .collect();
    metas.push(SegmentMeta::new(end.next_lsn, active.path.clone()));
    report.sealed_after_damage = Some(path.clone());
    let state = State::new(
        end.next_lsn,
        (end.next_lsn, SEGMENT_HEADER_LEN as u64),
        metas,
        log_bytes,
    );
    Ok((state, Some(active)))
}

// Linux: these tests write a real preallocated segment and rely on how Linux reports its
// unwritten extents (SEEK_DATA); the rest of the suite covers other platforms' logic.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::fs::FileExt;

    use crate::wal::frame::{FLAGS_SINGLE, encode_into};
    use crate::wal::{Wal, WalOptions};

    fn opts() -> WalOptions {
        WalOptions::default().segment_bytes_max(1 << 20)
    }

    /// A real preallocated segment holding records 1..=10, and where its data ends.
    fn ten_records() -> (tempfile::TempDir, std::fs::File, u64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (wal, _) = Wal::open(dir.path(), opts()).expect("open");
        for i in 0..10u8 {
            wal.append(&[i; 40]).expect("append");
        }
        wal.close().expect("close");
        let path = dir.path().join(format!("{:020}.seg", 1));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open segment");
        (dir, file, 48 + 10 * 64)
    }

    fn frame(lsn: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(&mut out, lsn, FLAGS_SINGLE, &[0xab; 40]);
        out
    }

    /// Open trusts the file system to say which preallocated space was never written; a frame
    /// written far into that space, past an unwritten gap, must still be found: the damage
    /// before it is corruption, not the end of data.
    #[test]
    fn a_frame_far_into_unwritten_space_is_found() {
        let (dir, file, end) = ten_records();
        file.write_all_at(&[0x55; 8], end).expect("garbage");
        file.write_all_at(&frame(12), 700 << 10).expect("far frame");
        drop(file);
        match Wal::open(dir.path(), opts()) {
            Err(crate::Error::Corrupt { offset, lsn, .. }) => {
                assert_eq!((offset, lsn), (Some(end), Some(11)));
            }
            other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
        }
    }

    /// A torn record in front of unwritten space is cut, and only its bytes are counted.
    #[test]
    fn a_torn_record_before_unwritten_space_is_cut() {
        let (dir, file, end) = ten_records();
        let torn = frame(11);
        file.write_all_at(torn.get(..30).expect("30 bytes"), end)
            .expect("torn write");
        drop(file);
        let (wal, report) = Wal::open(dir.path(), opts()).expect("open");
        assert_eq!(
            (
                report.next_lsn,
                report.torn_bytes_cut,
                report.torn_at.map(|t| t.1)
            ),
            (11, 30, Some(end))
        );
        assert_eq!(wal.read_from(1, 100).expect("replay").len(), 10);
    }
}
