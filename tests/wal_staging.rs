//! Goal: a staging segment (`Wal::begin_staging`) is all or nothing after a power cut at any
//! moment, never costs a record from before, is never read until committed, and a leftover
//! one is deleted by the next writer's open and ignored by read-only opens. Method: the
//! simulated disk fails the n-th write or the n-th fsync of a staged commit (for every n the
//! commit performs), then cuts the power keeping only synced bytes or a torn prefix of the
//! unsynced ones (512 B / 4 KiB); the reopened log must hold exactly the records from before,
//! or those plus every staged one, and take new appends after them.

mod common;
use common::*;

use std::path::Path;

use tasklog::wal::sim::SimStorage;
use tasklog::wal::{Lsn, Storage, Wal, staging_path};

/// Records appended the ordinary way before the staging.
const BEFORE: u64 = 7;
/// Staged records: large enough that the staging buffer (1 MiB) is written several times.
const STAGED: u64 = 40;

/// A staged record's payload: about 50 KiB, distinct per LSN.
fn big(lsn: Lsn) -> Vec<u8> {
    let len = 50_000 + (lsn as usize % 13) * 101;
    (0..len).map(|k| (lsn as usize * 7 + k / 3) as u8).collect()
}

fn expected(lsn: Lsn) -> Vec<u8> {
    if lsn <= BEFORE {
        payload(lsn)
    } else {
        big(lsn)
    }
}

/// Opens a log with `BEFORE` records, then stages and commits `STAGED` more.
fn stage_and_commit(wal: &Wal) -> tasklog::Result<Lsn> {
    let mut staging = wal.begin_staging()?;
    for i in 0..STAGED {
        let lsn = staging.next_lsn();
        assert_eq!(lsn, BEFORE + 1 + i);
        staging.append(&big(lsn))?;
    }
    staging.commit()
}

fn fresh(seed: u64) -> (SimStorage, Wal) {
    let sim = SimStorage::new(seed);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=BEFORE {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
    (sim, wal)
}

/// Checks a reopened image: records 1..=BEFORE, then either none or all staged ones; returns
/// how many records came back.
fn check_image(image: &SimStorage, what: &str) -> u64 {
    let wal = open_sim(image, small_opts())
        .unwrap_or_else(|e| panic!("{what}: the log should reopen after the cut: {e}"));
    let records = all_records(&wal).unwrap_or_else(|e| panic!("{what}: replay failed: {e}"));
    let n = records.len() as u64;
    assert!(
        n == BEFORE || n == BEFORE + STAGED,
        "{what}: {n} records back, expected {BEFORE} or {}",
        BEFORE + STAGED
    );
    for (lsn, p) in &records {
        assert!(*p == expected(*lsn), "{what}: wrong payload at LSN {lsn}");
    }
    assert!(
        !image
            .list_dir(&sim_dir())
            .unwrap()
            .iter()
            .any(|p| tasklog::wal::is_staging_name(p)),
        "{what}: a writer's open should delete leftover staging files"
    );
    // The log goes on after whatever came back.
    assert_eq!(wal.append(b"after").unwrap(), n + 1, "{what}");
    wal.close().unwrap();
    n
}

/// Writes and fsyncs one clean staged commit performs (after the `BEFORE` records).
fn ops_of_a_commit() -> (u64, u64) {
    let (sim, wal) = fresh(0);
    let (w0, s0) = sim.op_counts();
    stage_and_commit(&wal).unwrap();
    let (w1, s1) = sim.op_counts();
    (w1 - w0, s1 - s0)
}

#[test]
fn a_power_cut_at_every_write_and_sync_of_a_staged_commit_leaves_none_or_all() {
    let (writes, syncs) = ops_of_a_commit();
    assert!(writes >= 4 && syncs >= 3, "{writes} writes, {syncs} syncs");
    let mut outcomes = [0u32; 2];
    for (kind, total) in [("write", writes), ("sync", syncs)] {
        for n in 1..=total {
            for torn in [None, Some(512), Some(4096)] {
                let (sim, wal) = fresh(n * 7 + torn.unwrap_or(1) as u64);
                sim.set_torn_crash(torn);
                if kind == "write" {
                    sim.fail_nth_write(n);
                } else {
                    sim.fail_nth_sync(n);
                }
                let committed = stage_and_commit(&wal).is_ok();
                let image = sim.power_cut();
                drop(wal);
                let what = format!("{kind} {n} of {total} failing, torn {torn:?}");
                let back = check_image(&image, &what);
                if committed {
                    assert_eq!(
                        back,
                        BEFORE + STAGED,
                        "{what}: a committed staging was lost"
                    );
                }
                outcomes[usize::from(back > BEFORE)] += 1;
            }
        }
    }
    // Both outcomes occur: cuts before the rename lose the staging, cuts after keep it.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn a_power_cut_right_after_a_commit_keeps_every_staged_record() {
    for torn in [None, Some(512), Some(4096)] {
        let (sim, wal) = fresh(3);
        sim.set_torn_crash(torn);
        assert_eq!(stage_and_commit(&wal).unwrap(), BEFORE + STAGED);
        // Nothing else synced after the commit returned.
        let image = sim.power_cut();
        drop(wal);
        assert_eq!(check_image(&image, "after commit"), BEFORE + STAGED);
    }
}

#[test]
fn committed_records_replay_in_order_and_the_log_goes_on() {
    let (sim, wal) = fresh(1);
    assert_eq!(stage_and_commit(&wal).unwrap(), BEFORE + STAGED);
    assert_eq!(wal.next_lsn(), BEFORE + STAGED + 1);
    assert_eq!(wal.durable_lsn(), BEFORE + STAGED);
    assert_eq!(wal.append(b"x").unwrap(), BEFORE + STAGED + 1);
    let records = all_records(&wal).unwrap();
    assert_eq!(records.len() as u64, BEFORE + STAGED + 1);
    wal.close().unwrap();
    // The staged segment is an ordinary segment now, named by its first LSN.
    let names = sim_segments(&sim, &sim_dir());
    assert!(
        names
            .iter()
            .any(|p| p.ends_with(format!("{:020}.seg", BEFORE + 1))),
        "{names:?}"
    );
    let wal = open_sim(&sim, small_opts()).unwrap();
    assert_eq!(all_records(&wal).unwrap().len() as u64, BEFORE + STAGED + 1);
}

#[test]
fn an_abandoned_staging_leaves_the_log_as_it_was() {
    let (sim, wal) = fresh(2);
    let mut staging = wal.begin_staging().unwrap();
    let path = staging.path().to_path_buf();
    for _ in 0..STAGED {
        let lsn = staging.next_lsn();
        staging.append(&big(lsn)).unwrap();
    }
    assert!(sim.exists(&path));
    drop(staging);
    assert!(!sim.exists(&path), "the staging file should be deleted");
    assert_eq!(wal.next_lsn(), BEFORE + 1);
    assert_eq!(wal.append(&payload(BEFORE + 1)).unwrap(), BEFORE + 1);
    assert_prefix(&all_records(&wal).unwrap(), BEFORE + 1);
}

#[test]
fn a_staging_is_refused_when_the_log_moved_on_meanwhile() {
    let (_sim, wal) = fresh(4);
    let mut staging = wal.begin_staging().unwrap();
    staging.append(b"staged").unwrap();
    assert_eq!(wal.append(&payload(BEFORE + 1)).unwrap(), BEFORE + 1);
    let err = staging.commit().unwrap_err();
    assert!(err.to_string().contains("moved on"), "{err}");
    // Not poisoned: the log is unchanged and takes appends.
    assert_eq!(wal.append(&payload(BEFORE + 2)).unwrap(), BEFORE + 2);
    assert_prefix(&all_records(&wal).unwrap(), BEFORE + 2);
}

/// A staging file that looks like a valid segment continuing the log: if any open read it,
/// its records would show up at LSN `BEFORE + 1`.
fn plant_leftover(sim: &SimStorage, dir: &Path) -> std::path::PathBuf {
    use tasklog::wal::frame::{FLAGS_SINGLE, encode_into};
    use tasklog::wal::segment::SegmentHeader;
    let header = SegmentHeader {
        first_lsn: BEFORE + 1,
        prev_first_lsn: 1,
        segment_bytes_max: 4096,
    };
    let mut bytes = header.encode().to_vec();
    for lsn in BEFORE + 1..BEFORE + 4 {
        encode_into(&mut bytes, lsn, FLAGS_SINGLE, b"never part of the log");
    }
    let path = staging_path(dir, BEFORE + 1);
    sim.put_file(&path, bytes);
    path
}

#[test]
fn a_leftover_staging_file_is_ignored_by_read_only_opens_and_deleted_by_a_writer() {
    let (sim, wal) = fresh(5);
    wal.close().unwrap();
    let path = plant_leftover(&sim, &sim_dir());
    let read_only = open_sim(&sim, small_opts().read_only(true)).unwrap();
    assert_prefix(&all_records(&read_only).unwrap(), BEFORE);
    assert!(
        sim.exists(&path),
        "a read-only open must not delete anything"
    );
    drop(read_only);
    let wal = open_sim(&sim, small_opts()).unwrap();
    assert!(
        !sim.exists(&path),
        "a writer's open should delete the leftover"
    );
    assert_prefix(&all_records(&wal).unwrap(), BEFORE);
    assert_eq!(wal.append(&payload(BEFORE + 1)).unwrap(), BEFORE + 1);
    // The deletion is durable: a power cut now does not bring the file back.
    let image = sim.power_cut();
    assert!(!image.exists(&path));
}

/// The active segment holds no record (a new log, or right after a roll): the staged segment
/// has its name and replaces it, following the segment before it. Every cut still gives none
/// or all.
#[test]
fn a_staging_replaces_an_active_segment_without_records() {
    for torn in [None, Some(4096)] {
        for fail_sync in 0..6u64 {
            let sim = SimStorage::new(fail_sync);
            let wal = open_sim(&sim, small_opts()).unwrap();
            sim.set_torn_crash(torn);
            if fail_sync > 0 {
                sim.fail_nth_sync(fail_sync);
            }
            let done = (|| {
                let mut staging = wal.begin_staging()?;
                for _ in 0..5 {
                    let lsn = staging.next_lsn();
                    staging.append(&payload(lsn))?;
                }
                staging.commit()
            })();
            let image = sim.power_cut();
            drop(wal);
            let wal = open_sim(&image, small_opts()).unwrap();
            let records = all_records(&wal).unwrap();
            let n = records.len() as u64;
            assert!(n == 0 || n == 5, "sync {fail_sync} failing: {n} records");
            if let Ok(last) = done {
                assert_eq!((last, n), (5, 5));
            }
            assert_prefix(&records, n);
            assert_eq!(wal.append(&payload(n + 1)).unwrap(), n + 1);
        }
    }
}

/// In `Buffered` mode, records submitted before the staging and not yet written are written
/// and synced by the commit before the staged segment follows them: after a power cut right
/// after the commit, everything up to the last staged record is back.
#[test]
fn a_commit_in_buffered_mode_makes_the_records_before_it_durable_too() {
    use tasklog::wal::Durability;
    let opts = small_opts().durability(Durability::Buffered);
    let sim = SimStorage::new(11);
    let wal = open_sim(&sim, opts.clone()).unwrap();
    for i in 1..=BEFORE {
        wal.append(&payload(i)).unwrap();
    }
    let mut staging = wal.begin_staging().unwrap();
    for _ in 0..STAGED {
        let lsn = staging.next_lsn();
        staging.append(&big(lsn)).unwrap();
    }
    assert_eq!(staging.commit().unwrap(), BEFORE + STAGED);
    let image = sim.power_cut();
    drop(wal);
    let wal = open_sim(&image, opts).unwrap();
    let records = all_records(&wal).unwrap();
    assert_eq!(records.len() as u64, BEFORE + STAGED);
    for (lsn, p) in &records {
        assert!(*p == expected(*lsn), "LSN {lsn}");
    }
}

/// The staging's own record limit is the log's: a record of exactly `RECORD_BYTES_MAX` is
/// staged and read back whole after the commit, one byte more is refused with `TooLarge`
/// and takes no LSN. The staging starts at the log's next LSN. (Issue #23: cargo-mutants
/// showed `>` → `==`/`>=` in `Staging::append` and `Staging::first_lsn` → 0 unnoticed.)
#[test]
fn a_staged_record_of_exactly_the_maximum_size_is_kept_and_one_byte_more_refused() {
    use tasklog::Error;
    use tasklog::wal::RECORD_BYTES_MAX;
    let (sim, wal) = fresh(6);
    let mut staging = wal.begin_staging().unwrap();
    assert_eq!(staging.first_lsn(), BEFORE + 1);
    let too_large = vec![7u8; RECORD_BYTES_MAX + 1];
    match staging.append(&too_large) {
        Err(Error::TooLarge { what, len, max }) => assert_eq!(
            (what, len, max),
            ("record", too_large.len() as u64, RECORD_BYTES_MAX as u64)
        ),
        other => panic!("a staged record one byte over the limit gave {other:?}"),
    }
    drop(too_large);
    assert_eq!(
        staging.next_lsn(),
        BEFORE + 1,
        "the refused record took an LSN"
    );
    let largest: Vec<u8> = (0..RECORD_BYTES_MAX).map(|i| (i % 251) as u8).collect();
    assert_eq!(staging.append(&largest).unwrap(), BEFORE + 1);
    assert_eq!(staging.commit().unwrap(), BEFORE + 1);
    wal.close().unwrap();
    let records = all_records(&open_sim(&sim.crash(), small_opts()).unwrap()).unwrap();
    assert_eq!(records.len() as u64, BEFORE + 1);
    assert!(
        records[BEFORE as usize].1 == largest,
        "the largest staged record came back changed"
    );
}
