//! Goal: each durability promise of the log that a deliberately broken build used to pass
//! (issue #23, mutation testing) has a test here that fails when the promise is broken:
//! `truncate_before` syncs the directory, the torn-tail cut at open is fsynced, the writer's
//! open syncs the directory before trusting what it lists, `repair`'s quarantine copy is
//! fsynced, a zeroed header in front of records is corruption (never "an unfinished roll"),
//! and `close()` keeps the lock until a leader writing for others has finished; `durable_lsn`
//! and `synced_lsn` never run ahead of durability; repair's maintenance steps (quarantine names,
//! the cut, `quarantine_before`, `resume_at`, `records_above`) do exactly what they promise.
//!
//! Method: logs on the simulated disk (`SimStorage`), where a directory entry (create, rename,
//! remove) is durable only after `sync_dir` of its parent, file bytes and a `set_len` only
//! after an fsync of that file, and a chosen fsync can be held at a barrier. Each test ends in
//! a power cut (`crash()`) or looks at the store while an fsync is held. The code change each
//! test catches is listed in docs/durability.md ("Mutation testing").

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{all_records, assert_prefix, open_sim, payload, sim_dir, sim_segments, small_opts};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, Storage, Wal};

/// A closed log of `n` records over several small segments.
fn rolled_log(n: u64) -> SimStorage {
    let sim = SimStorage::new(7);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=n {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    sim
}

/// `truncate_before` returns only once the removals are durable: a power cut right after it
/// must not bring the removed segments back (they would resurrect compacted history and,
/// for a store, records below its snapshot).
#[test]
fn segments_removed_by_truncate_before_stay_removed_after_a_power_cut() {
    let sim = rolled_log(300);
    let wal = open_sim(&sim, small_opts()).unwrap();
    let before = sim_segments(&sim, &sim_dir());
    assert!(before.len() >= 4, "{} segments", before.len());
    let size = |p: &PathBuf| sim.file_bytes(p).map_or(0, |b| b.len() as u64);
    let sizes: Vec<u64> = before.iter().map(size).collect();
    let report = wal.truncate_before(200).unwrap();
    assert!(report.segments_removed >= 2, "{report:?}");
    // The report counts exactly the files and bytes that went.
    let after = sim_segments(&sim, &sim_dir());
    let gone: Vec<u64> = (0..before.len())
        .filter(|&i| !after.contains(&before[i]))
        .map(|i| sizes[i])
        .collect();
    assert_eq!(report.segments_removed, gone.len(), "{report:?}");
    let gone_bytes: u64 = gone.iter().sum();
    assert_eq!(report.bytes_removed, gone_bytes, "{report:?}");
    let first = wal.first_lsn();
    let left = sim_segments(&sim, &sim_dir());
    // No close, no later sync of anything: the power cut comes right after the call.
    let image = sim.crash();
    drop(wal);
    assert_eq!(
        sim_segments(&image, &sim_dir()),
        left,
        "a removed segment came back after a power cut: the directory was not fsynced"
    );
    let wal = open_sim(&image, small_opts()).unwrap();
    assert_eq!(wal.first_lsn(), first);
}

/// The torn tail a writer's open cuts is cut durably before the open returns: a power cut right
/// after the open must find a clean log (no tail to cut again).
#[test]
fn the_torn_tail_cut_at_open_is_durable() {
    let sim = rolled_log(100);
    let last = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let mut bytes = sim.file_bytes(&last).unwrap();
    // Half a record of garbage after the last complete one: a torn append.
    bytes.extend_from_slice(&[0x5a; 13]);
    sim.put_file(&last, bytes);
    let (wal, report) =
        Wal::open_with_storage(Arc::new(sim.clone()), sim_dir(), small_opts()).unwrap();
    assert_eq!(report.torn_bytes_cut, 13, "{report:?}");
    let image = sim.crash();
    drop(wal);
    let (wal, report) =
        Wal::open_with_storage(Arc::new(image.clone()), sim_dir(), small_opts()).unwrap();
    assert_eq!(
        report.torn_bytes_cut, 0,
        "the cut came undone at a power cut: it was not fsynced ({report:?})"
    );
    assert_prefix(&all_records(&wal).unwrap(), 100);
}

/// A segment whose data is on disk but whose directory entry is not (a writer killed between
/// the two, or whose directory fsync failed) is listed by the next writer in the same boot.
/// That writer's open must make the entry durable before appending to the segment, or a power
/// cut takes the segment, and the records acknowledged in it, away.
#[test]
fn a_writer_open_makes_the_listed_segments_durable_before_appending() {
    // The header of a first segment, taken from a log made elsewhere.
    let donor = rolled_log(1);
    let first = sim_segments(&donor, &sim_dir()).remove(0);
    let header = donor.file_bytes(&first).unwrap();

    let sim = SimStorage::new(8);
    // The log directory exists durably, empty.
    sim.put_file(&sim_dir().join("placeholder"), Vec::new());
    sim.remove_file(&sim_dir().join("placeholder")).unwrap();
    sim.sync_dir(&sim_dir()).unwrap();
    // The segment's bytes are synced; its directory entry is not.
    let f = sim.open(&first, OpenMode::CreateNew).unwrap();
    f.write_all_at(&header, 0).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let wal = open_sim(&sim, small_opts()).unwrap();
    assert_eq!(wal.next_lsn(), 2, "the segment holds record 1");
    for i in 2..=5 {
        wal.append(&payload(i)).unwrap();
    }
    let image = sim.crash();
    drop(wal);
    let wal = open_sim(&image, small_opts()).unwrap();
    assert_prefix(&all_records(&wal).unwrap(), 5);
}

/// `repair` copies the damaged bytes to `quarantine/` durably before it cuts: after a power
/// cut right after it, the copy holds every damaged byte.
#[test]
fn the_repair_quarantine_copy_survives_a_power_cut() {
    let sim = rolled_log(300);
    let segs = sim_segments(&sim, &sim_dir());
    let victim = segs.get(1).unwrap().clone();
    let mut bytes = sim.file_bytes(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    sim.put_file(&victim, bytes);
    let report = tasklog::wal::repair_with_storage(&sim, &sim_dir(), false).unwrap();
    assert!(!report.files_quarantined.is_empty(), "{report:?}");
    let copies: Vec<(PathBuf, Vec<u8>)> = report
        .files_quarantined
        .iter()
        .map(|p| (p.clone(), sim.file_bytes(p).unwrap()))
        .collect();
    assert!(copies.iter().any(|(_, b)| !b.is_empty()));
    let image = sim.crash();
    for (path, bytes) in copies {
        assert_eq!(
            image.file_bytes(&path).as_deref(),
            Some(&bytes[..]),
            "{}: the quarantine copy was not fsynced",
            path.display()
        );
    }
}

/// A last segment whose header is all zeros but which holds records after it is damage, not a
/// roll that never finished: open refuses it and leaves the file in place (deleting it would
/// drop acknowledged records silently); read-only opens refuse it too.
#[test]
fn a_zeroed_header_in_front_of_records_is_corruption_and_kept() {
    let sim = rolled_log(300);
    let last = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let mut bytes = sim.file_bytes(&last).unwrap();
    assert!(bytes.len() > 64, "the last segment holds records");
    bytes[..48].fill(0);
    sim.put_file(&last, bytes.clone());
    for read_only in [false, true] {
        let err = open_sim(&sim, small_opts().read_only(read_only)).unwrap_err();
        assert!(err.is_corruption(), "read_only {read_only}: {err}");
        assert!(
            err.to_string().contains(&last.display().to_string()),
            "{err}"
        );
        assert_eq!(
            sim.file_bytes(&last).as_deref(),
            Some(&bytes[..]),
            "the damaged segment was changed or removed"
        );
    }
}

/// `close()` must not release the lock while a group-commit leader is still writing records
/// submitted before the close (it leads for others after the close's own sync returned): a
/// writer opening then could have its records overwritten by the old leader's late writes.
/// The leader's second fsync is held at a barrier; meanwhile `close()` must not return and the
/// lock must still be taken.
#[test]
fn close_keeps_the_lock_while_a_leader_is_still_writing() {
    let sim = SimStorage::new(9);
    let wal = open_sim(&sim, small_opts()).unwrap();
    wal.append(&payload(1)).unwrap();
    sim.hold_syncs();
    // The leader of round 1: written, held in its fdatasync.
    let first = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(&payload(2)))
    };
    wait_until(|| sim.syncs_held() == 1, "round 1 never reached its fsync");
    let closer = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.close())
    };
    // Give close() time to take the LSN its own sync waits for (2) and block on it.
    std::thread::sleep(Duration::from_millis(200));
    // Submitted after that: the close's sync does not wait for it, but a leader still writes it.
    let second = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(&payload(3)))
    };
    wait_until(|| wal.next_lsn() == 4, "record 3 was never submitted");
    // Round 1 goes through; the fsync of round 2 (record 3) is held.
    sim.release_syncs_then_hold_after(1);
    wait_until(|| sim.syncs_held() == 1, "round 2 never reached its fsync");
    std::thread::sleep(Duration::from_millis(150));
    let lock = sim_dir().join("LOCK");
    assert!(
        !closer.is_finished(),
        "close() returned while a leader was still writing"
    );
    assert!(
        sim.try_lock(&lock).unwrap().is_none(),
        "the lock was released while a leader was still writing"
    );
    sim.release_syncs();
    assert_eq!(first.join().unwrap().unwrap(), 2);
    closer.join().unwrap().unwrap();
    // Record 3 was submitted before the close took effect: written whole, or refused.
    let third_ok = second.join().unwrap().is_ok();
    let wal = open_sim(&sim, small_opts()).unwrap();
    let records = all_records(&wal).unwrap();
    assert_prefix(&records, if third_ok { 3 } else { records.len() as u64 });
    assert!(records.len() >= 2);
}

fn wait_until(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `durable_lsn` names only what the mode has made durable (and `synced_lsn` what is fsynced): under `Sync` a record whose
/// fdatasync is held is not yet durable, under `Interval` a record only submitted (not yet
/// written to the OS) is not, and under `Buffered` every submitted record is. The store
/// answers reads without waiting for whatever is at or below it (docs/design.md "reads wait
/// too"), so a value one too high would show a change a crash can still take away.
#[test]
fn durable_lsn_names_only_what_the_mode_has_made_durable() {
    use tasklog::wal::Durability;

    let sim = SimStorage::new(21);
    let wal = open_sim(&sim, small_opts()).unwrap();
    assert_eq!(wal.durable_lsn(), 0, "Sync, empty");
    wal.append(&payload(1)).unwrap();
    sim.hold_syncs();
    let held = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append(&payload(2)))
    };
    wait_until(|| sim.syncs_held() == 1, "record 2 never reached its fsync");
    assert_eq!(wal.next_lsn(), 3);
    assert_eq!(wal.durable_lsn(), 1, "Sync: record 2 is held in its fsync");
    sim.release_syncs();
    assert_eq!(held.join().unwrap().unwrap(), 2);
    assert_eq!(wal.durable_lsn(), 2, "Sync: record 2 fsynced");
    wal.close().unwrap();

    // NOTE: an interval no test waits for: nothing is written but by the appends below.
    let sim = SimStorage::new(22);
    let interval = small_opts().durability(Durability::Interval(Duration::from_secs(3600)));
    let wal = open_sim(&sim, interval).unwrap();
    wal.append(&payload(1)).unwrap();
    let ticket = wal.submit(&[&payload(2)]).unwrap();
    assert_eq!(wal.next_lsn(), 3);
    assert_eq!(wal.durable_lsn(), 1, "Interval: record 2 only submitted");
    ticket.wait().unwrap();
    assert_eq!(wal.durable_lsn(), 2, "Interval: record 2 written");
    wal.close().unwrap();

    let sim = SimStorage::new(23);
    let wal = open_sim(&sim, small_opts().durability(Durability::Buffered)).unwrap();
    assert_eq!(wal.durable_lsn(), 0, "Buffered, empty");
    wal.submit(&[&payload(1), &payload(2), &payload(3)])
        .unwrap();
    assert_eq!(wal.durable_lsn(), 3, "Buffered: every submitted record");
    // `synced_lsn` is the fsynced part, whatever the mode.
    assert_eq!(wal.synced_lsn(), 0, "Buffered: nothing fsynced yet");
    wal.sync().unwrap();
    assert_eq!(wal.synced_lsn(), 3, "Buffered: all fsynced by sync()");
    wal.close().unwrap();
}

/// `repair` never overwrites an earlier quarantine copy: a name taken gets the next numeric
/// suffix (`.1`, `.2`, ...; docs/format.md "quarantine/"). A dry run says it is one and
/// changes nothing.
#[test]
fn repair_never_overwrites_an_earlier_quarantine_copy() {
    let sim = rolled_log(300);
    let segs = sim_segments(&sim, &sim_dir());
    let victim = segs.get(1).unwrap().clone();
    let mut bytes = sim.file_bytes(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    sim.put_file(&victim, bytes.clone());

    let dry = tasklog::wal::repair_with_storage(&sim, &sim_dir(), true).unwrap();
    assert!(dry.dry_run, "{dry:?}");
    assert!(dry.cut.is_some(), "{dry:?}");
    assert_eq!(
        sim_segments(&sim, &sim_dir()),
        segs,
        "a dry run changed the log"
    );
    assert_eq!(sim.file_bytes(&victim).unwrap(), bytes, "a dry run cut");
    let name = dry.files_quarantined.first().unwrap().clone();
    assert!(!sim.exists(&name), "a dry run wrote {}", name.display());

    // Two earlier repairs at the same point left their copies.
    let suffixed = |n: u32| PathBuf::from(format!("{}.{n}", name.display()));
    let earlier = [name.clone(), suffixed(1)];
    for p in &earlier {
        sim.put_file(p, b"an earlier repair's copy".to_vec());
    }
    // In a thread: a search for a free name that never ends fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let repairing = sim.clone();
    std::thread::spawn(move || {
        tx.send(tasklog::wal::repair_with_storage(
            &repairing,
            &sim_dir(),
            false,
        ))
        .ok();
    });
    let report = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("repair kept looking for a free quarantine name")
        .unwrap();
    assert!(!report.dry_run, "{report:?}");
    assert_eq!(
        report.files_quarantined.first(),
        Some(&suffixed(2)),
        "{report:?}"
    );
    for p in &earlier {
        assert_eq!(
            sim.file_bytes(p).as_deref(),
            Some(&b"an earlier repair's copy"[..]),
            "{} was overwritten",
            p.display()
        );
    }
    // The cut: the damaged segment truncated where its damage starts, every later one removed
    // (not left behind empty).
    let cut = report.cut.clone().unwrap();
    assert_eq!(cut.file, victim);
    assert_eq!(
        sim.file_bytes(&victim).map(|b| b.len() as u64),
        Some(cut.offset)
    );
    let later: Vec<PathBuf> = segs.iter().skip(2).cloned().collect();
    assert!(!later.is_empty());
    assert_eq!(report.segments_removed, later, "{report:?}");
    assert_eq!(sim_segments(&sim, &sim_dir()), segs[..2].to_vec());
}

/// A cut at offset 0 (the damaged segment's header is bad) removes that segment instead of
/// leaving it empty: `CutPoint` "removed when the offset is 0", and listed as removed.
#[test]
fn a_repair_cut_at_a_damaged_header_removes_the_segment() {
    let sim = rolled_log(300);
    let segs = sim_segments(&sim, &sim_dir());
    let victim = segs.get(1).unwrap().clone();
    let mut bytes = sim.file_bytes(&victim).unwrap();
    bytes[2] ^= 0x40;
    sim.put_file(&victim, bytes);
    let report = tasklog::wal::repair_with_storage(&sim, &sim_dir(), false).unwrap();
    let cut = report.cut.clone().unwrap();
    assert_eq!((&cut.file, cut.offset), (&victim, 0), "{report:?}");
    assert_eq!(report.segments_removed, segs[1..].to_vec(), "{report:?}");
    assert_eq!(sim_segments(&sim, &sim_dir()), segs[..1].to_vec());
    assert!(!sim.exists(&victim), "left behind, empty");
}

/// `quarantine_before` moves exactly the segments starting below `keep_first`, and refuses an
/// LSN no segment starts at (the log left behind must start there); a dry run moves nothing.
#[test]
fn quarantine_before_moves_exactly_the_segments_below_and_checks_its_lsn() {
    use tasklog::wal::repair::quarantine_before;

    let sim = rolled_log(300);
    let segs = sim_segments(&sim, &sim_dir());
    let first_lsn = |p: &PathBuf| -> u64 {
        let name = p.file_stem().unwrap().to_str().unwrap();
        name.parse().unwrap()
    };
    let keep = first_lsn(&segs[2]);
    let err = quarantine_before(&sim, &sim_dir(), keep + 1, false).unwrap_err();
    assert!(matches!(err, tasklog::Error::InvalidInput { .. }), "{err}");
    assert_eq!(sim_segments(&sim, &sim_dir()), segs, "a refused call moved");

    // Earlier moves left `.covered` and `.covered.1` of the first segment: the next suffix.
    let q = sim_dir().join("quarantine");
    let name = segs[0].file_name().unwrap().to_str().unwrap().to_string();
    for taken in [format!("{name}.covered"), format!("{name}.covered.1")] {
        sim.put_file(&q.join(taken), b"earlier".to_vec());
    }
    let planned = quarantine_before(&sim, &sim_dir(), keep, true).unwrap();
    assert_eq!(planned[0].1, q.join(format!("{name}.covered.2")));
    assert_eq!(sim_segments(&sim, &sim_dir()), segs, "a dry run moved");
    let moved = quarantine_before(&sim, &sim_dir(), keep, false).unwrap();
    assert_eq!(moved, planned);
    let from: Vec<PathBuf> = moved.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(from, segs[..2].to_vec());
    assert_eq!(sim_segments(&sim, &sim_dir()), segs[2..].to_vec());
    for (_, to) in &moved {
        assert!(sim.exists(to), "{}", to.display());
    }
}

/// `resume_at` starts a new segment chained to the last one only above that segment's first
/// LSN; the log then goes on from there.
#[test]
fn resume_at_starts_a_chained_segment_above_the_last_one_only() {
    use tasklog::wal::repair::resume_at;

    let sim = rolled_log(300);
    let segs = sim_segments(&sim, &sim_dir());
    let first_lsn =
        |p: &PathBuf| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    let last_first = first_lsn(segs.last().unwrap());
    let err = resume_at(&sim, &sim_dir(), last_first, 4096).unwrap_err();
    assert!(matches!(err, tasklog::Error::InvalidInput { .. }), "{err}");
    assert_eq!(sim_segments(&sim, &sim_dir()), segs, "a refused call wrote");

    let path = resume_at(&sim, &sim_dir(), 301, 4096).unwrap();
    assert_eq!(first_lsn(&path), 301);
    let wal = open_sim(&sim, small_opts()).unwrap();
    assert_eq!(wal.next_lsn(), 301);
    wal.append(&payload(301)).unwrap();
    assert_prefix(&all_records(&wal).unwrap(), 301);
}

/// `records_above` (what a cut would lose) finds every readable record above the LSN given,
/// each once and in order, also past damage: here all of 101..=300 but the one damaged record.
#[test]
fn records_above_finds_every_readable_record_past_damage() {
    use tasklog::wal::repair::records_above;

    let sim = rolled_log(300);
    let scan = |sim: &SimStorage, above: u64| {
        // In a thread: a scan that never ends fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let sim = sim.clone();
        std::thread::spawn(move || tx.send(records_above(&sim, &sim_dir(), above)).ok());
        rx.recv_timeout(Duration::from_secs(20))
            .expect("records_above never ended")
            .unwrap()
    };
    let all = scan(&sim, 0);
    assert_eq!(all.len(), 300);
    for (lsn, bytes) in &all {
        assert_eq!(bytes, &payload(*lsn), "record {lsn}");
    }

    let segs = sim_segments(&sim, &sim_dir());
    let victim = segs.get(1).unwrap().clone();
    let mut bytes = sim.file_bytes(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    sim.put_file(&victim, bytes);
    let found = scan(&sim, 100);
    let lsns: Vec<u64> = found.iter().map(|(l, _)| *l).collect();
    assert_eq!(lsns.first(), Some(&101), "{lsns:?}");
    assert_eq!(lsns.last(), Some(&300), "{lsns:?}");
    assert!(lsns.windows(2).all(|w| w[0] < w[1]), "{lsns:?}");
    assert_eq!(lsns.len(), 199, "all but the damaged record: {lsns:?}");
    for (lsn, bytes) in &found {
        assert_eq!(bytes, &payload(*lsn), "record {lsn}");
    }
}

/// `records_above`'s skip over zero runs must not step over a frame whose first 8 bytes hold
/// no zero: a record of 0x0101_0101 bytes (16 MiB) has a length with four non-zero bytes and a
/// length check of 0xFE each, so the first zero of its frame is the reserved byte at offset 10.
/// A skip that jumped to "7 bytes before the next zero" would land 3 bytes into that frame and
/// lose the record (the cargo-mutants survivor `b != 0` → `b == 0`).
#[test]
fn records_above_finds_a_record_whose_length_has_no_zero_byte() {
    use tasklog::wal::repair::records_above;

    let len = 0x0101_0101_usize;
    assert!(len <= tasklog::wal::frame::RECORD_BYTES_MAX);
    let sim = SimStorage::new(11);
    let opts = small_opts().segment_bytes_max(64 << 20);
    let wal = open_sim(&sim, opts).unwrap();
    let big = vec![0u8; len];
    assert_eq!(wal.append(&big).unwrap(), 1);
    assert_eq!(wal.append(&payload(2)).unwrap(), 2);
    wal.close().unwrap();

    let found = records_above(&sim, &sim_dir(), 0).unwrap();
    let lsns: Vec<u64> = found.iter().map(|(l, _)| *l).collect();
    assert_eq!(lsns, vec![1, 2], "both records, the 16 MiB one first");
    assert_eq!(found[0].1.len(), len);
    assert_eq!(found[1].1, payload(2));
}

/// `verify` counts every record of a multi-record batch, on real files: a log of single
/// records and batches of 2 to 5 records reports exactly the records appended, and the next
/// LSN after them. Kills the batch count in `scan_segment_from` (`records += lsn - first + 1`:
/// `+=` → `*=`, `-` → `+` / `/`, `+ 1` → `- 1` / `* 1`), which only `verify` reads.
#[test]
fn verify_counts_every_record_of_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), tasklog::wal::WalOptions::default()).unwrap();
    let mut appended = 0u64;
    for round in 0..20u64 {
        wal.append(format!("single {round}").as_bytes()).unwrap();
        let batch: Vec<Vec<u8>> = (0..2 + round % 4)
            .map(|k| format!("batch {round} record {k}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        wal.append_batch(&refs).unwrap();
        appended += 1 + batch.len() as u64;
    }
    wal.close().unwrap();
    let report = tasklog::wal::verify(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        (report.records, report.next_lsn),
        (appended, appended + 1),
        "records counted by verify"
    );
}

/// Non-zero bytes after the end-of-data marker are damage even when they cancel out under
/// XOR (two equal bytes): the end of data is proven by every byte being zero. Kills `|` → `^`
/// in `all_zero`'s 64-byte fold (it would take such bytes for the zeroed tail).
#[test]
fn equal_nonzero_bytes_after_the_end_of_data_are_not_taken_for_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), tasklog::wal::WalOptions::default()).unwrap();
    let payload = b"record 00000";
    for _ in 0..10 {
        wal.append(payload).unwrap();
    }
    wal.close().unwrap();
    let segment = first_segment_file(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    // Segment header (48 bytes), then ten frames of a 24-byte header and the payload.
    let data_end = 48 + 10 * (24 + payload.len());
    assert!(bytes.len() >= data_end + 64, "the segment is preallocated");
    assert!(bytes[data_end..data_end + 64].iter().all(|&b| b == 0));
    assert!(tasklog::wal::verify(dir.path()).unwrap().is_clean());
    bytes[data_end + 16] = 0x5A;
    bytes[data_end + 17] = 0x5A;
    std::fs::write(&segment, &bytes).unwrap();
    let report = tasklog::wal::verify(dir.path()).unwrap();
    assert!(
        !report.is_clean(),
        "two equal non-zero bytes after the data went unnoticed: {report:?}"
    );
}

/// The sizes of the active segment file on the simulated disk as records arrive.
fn active_segment_len(sim: &SimStorage) -> u64 {
    let segs = sim_segments(sim, &sim_dir());
    let last = segs.last().expect("an active segment");
    sim.file_bytes(last).expect("its bytes").len() as u64
}

/// A segment is preallocated 256 KiB at its first write, keeps that size while the data fits,
/// and doubles only when the data reaches its end (docs/durability.md, "Small volumes"). Kills
/// `PREALLOCATE_BYTES_FIRST` `<<` → `>>` (no first reservation) and `end < len` → `==` / `>`
/// in `reserve` (a reservation at every append, or none at all).
#[test]
fn a_segment_is_preallocated_256_kib_then_doubled_as_the_data_reaches_its_end() {
    let sim = SimStorage::new(11);
    let opts = tasklog::wal::WalOptions::default().segment_bytes_max(4 << 20);
    let wal = open_sim(&sim, opts.clone()).unwrap();
    wal.append(b"first").unwrap();
    assert_eq!(
        active_segment_len(&sim),
        256 << 10,
        "after the first record"
    );
    for i in 0..20u32 {
        wal.append(format!("small record {i}").as_bytes()).unwrap();
    }
    assert_eq!(
        active_segment_len(&sim),
        256 << 10,
        "small records fit: no growth"
    );
    // About 300 KiB more: past the first reservation, so it doubles once.
    let big = vec![7u8; 10 << 10];
    for _ in 0..30 {
        wal.append(&big).unwrap();
    }
    assert_eq!(active_segment_len(&sim), 512 << 10, "doubled once");
    drop(wal);
}

/// On a volume with no room to preallocate, the log still writes what fits: a preallocation
/// refused with ENOSPC reserves nothing and the writes decide. Kills the `StorageFull` guard
/// in `reserve` → `false` (and `==` → `!=`): the open or the first append would fail.
#[test]
fn a_volume_too_full_to_preallocate_still_takes_what_fits() {
    let sim = SimStorage::new(12);
    // Room for the segment header and a few records, not for 256 KiB.
    sim.enospc_after_bytes(16 << 10);
    let wal = open_sim(&sim, tasklog::wal::WalOptions::default()).unwrap();
    for i in 0..20u32 {
        wal.append(format!("record {i}").as_bytes()).unwrap();
    }
    assert!(active_segment_len(&sim) < 256 << 10, "nothing was reserved");
    drop(wal);
    let reopened = open_sim(&sim.power_cut(), tasklog::wal::WalOptions::default()).unwrap();
    assert_eq!(all_records(&reopened).unwrap().len(), 20);
}

/// `replay` returns how many records it delivered, from the start and from an LSN inside the
/// log. Kills `delivered += 1` → `*=` in `replay_range`.
#[test]
fn replay_returns_the_number_of_records_it_delivered() {
    let sim = SimStorage::new(13);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 0..50u64 {
        wal.append(&payload(i)).unwrap();
    }
    let mut seen = 0u64;
    let delivered = wal
        .replay(1, &mut |_, _| {
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(delivered, 50);
    assert_eq!(seen, 50);
    assert_eq!(wal.replay(21, &mut |_, _| Ok(())).unwrap(), 30);
}

/// A buffered append is acknowledged while its record is still in the process's buffer; a
/// replay right after it must still deliver it (the replay writes the buffer out first).
/// Kills `!core.options.read_only` → `core.options.read_only` in the replay's plan.
#[test]
fn a_replay_delivers_buffered_records_not_yet_written() {
    let sim = SimStorage::new(14);
    let opts = small_opts().durability(tasklog::wal::Durability::Buffered);
    let wal = open_sim(&sim, opts).unwrap();
    for i in 0..7u64 {
        wal.append(&payload(i)).unwrap();
    }
    let records = all_records(&wal).unwrap();
    assert_eq!(records.len(), 7, "a replay after buffered appends");
    assert_eq!(records.last().unwrap().1, payload(6));
}

/// Records the log acknowledged but whose bytes are gone from the active segment (the file
/// cut short behind the writer's back) make a replay fail, naming the file: never a silently
/// shorter log. Kills `end.next_lsn < limit` → `>` in `replay_range`.
#[test]
fn a_replay_of_an_active_segment_cut_short_is_an_error_not_a_shorter_log() {
    let sim = SimStorage::new(15);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 0..5u64 {
        wal.append(&payload(i)).unwrap();
    }
    let segs = sim_segments(&sim, &sim_dir());
    let active = segs.last().unwrap().clone();
    let bytes = sim.file_bytes(&active).unwrap();
    // Keep the header and about half of the data.
    let keep = 48 + (bytes.len() - 48) / 2;
    sim.put_file(&active, bytes[..keep].to_vec());
    let err = wal.replay(1, &mut |_, _| Ok(())).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ends before LSN"), "{text}");
}

/// A segment size outside what the format allows is refused at open, naming the option, before
/// any file is made. Kills `check_options` → `Ok(())`.
#[test]
fn a_segment_size_out_of_range_is_refused_at_open() {
    for bytes in [0, 100, u64::MAX] {
        let sim = SimStorage::new(16);
        let opts = tasklog::wal::WalOptions::default().segment_bytes_max(bytes);
        match open_sim(&sim, opts) {
            Err(tasklog::Error::InvalidInput { at, reason }) => {
                assert_eq!(at.as_deref(), Some("segment_bytes_max"), "{reason}");
            }
            Err(other) => panic!("segment_bytes_max {bytes}: {other:?}"),
            Ok(_) => panic!("segment_bytes_max {bytes} was accepted"),
        }
        let first = sim_dir().join("00000000000000000001.seg");
        assert!(sim.file_bytes(&first).is_none(), "no segment made");
    }
}

/// `verify` on a log with a torn last record counts the records before the tear, on real
/// files. Kills `cut_lsn - first_lsn` → `+` / `/` in the reader's torn-tail result.
#[test]
fn verify_counts_the_records_before_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tasklog::wal::WalOptions::default().preallocate(false);
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    for i in 0..10u64 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let segment = first_segment_file(dir.path());
    // Cut into the last frame (payload(9) is 3 bytes: its frame is 27 bytes).
    cut_end_off(&segment, 10);
    let report = tasklog::wal::verify(dir.path()).unwrap();
    assert!(report.tail_torn, "{report:?}");
    assert_eq!((report.records, report.next_lsn), (9, 10), "{report:?}");
}

/// A torn write of a record whose payload holds an encoded frame of the same LSN (a log of
/// logs, a copied record) leaves that inner copy intact after the tear; it must not pass for
/// valid data after damage, which would turn a torn tail into corruption and refuse the open.
/// Kills `f.lsn > expected` → `>=` in `valid_frame_after_within`.
#[test]
fn a_torn_record_holding_a_copy_of_its_own_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let opts = tasklog::wal::WalOptions::default().preallocate(false);
    let (wal, _) = Wal::open(dir.path(), opts.clone()).unwrap();
    for i in 0..4u64 {
        wal.append(&payload(i)).unwrap();
    }
    let mut inner = Vec::new();
    tasklog::wal::frame::encode_into(&mut inner, 5, tasklog::wal::frame::FLAGS_SINGLE, b"inner");
    let mut outer = inner.clone();
    outer.extend_from_slice(&[0xAB; 200]);
    assert_eq!(wal.append(&outer).unwrap(), 5);
    wal.close().unwrap();
    let segment = first_segment_file(dir.path());
    // Tear the last record inside its trailing padding: the inner frame stays whole.
    cut_end_off(&segment, 100);
    let report = tasklog::wal::verify(dir.path()).unwrap();
    assert!(report.tail_torn, "{report:?}");
    let (wal, _) = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(
        all_records(&wal).unwrap().len(),
        4,
        "the torn record is cut"
    );
}

/// The first segment file of a log directory on the real file system.
fn first_segment_file(dir: &std::path::Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.into_iter().next().expect("a segment file")
}

/// Cuts the last `bytes` bytes off a file (a write that did not finish).
fn cut_end_off(path: &std::path::Path, bytes: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - bytes).unwrap();
}
