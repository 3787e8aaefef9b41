//! Goal: the promises of the log's group commit (`src/wal/group_commit.rs`) that cargo-mutants
//! showed no test kept (issue #23, mutation testing) each have a test here that fails when the
//! code keeping them is broken: the record size limit is exact, and the mode's acknowledgement
//! means what docs/durability.md says it means.
//!
//! Method: logs on the simulated disk (`SimStorage`), whose live bytes (what the OS has, which
//! a process crash keeps) and durable bytes (what a power cut keeps, `crash()`) differ until an
//! fsync. The code change each test catches is listed in docs/durability.md ("Mutation
//! testing").

mod common;

use common::{all_records, assert_stats_match_files, open_sim, segment_sizes, small_opts};
use tasklog::Error;
use tasklog::wal::RECORD_BYTES_MAX;
use tasklog::wal::sim::SimStorage;

/// `RECORD_BYTES_MAX` is the largest record accepted, not the first refused: a record of
/// exactly that size is appended and read back whole, one byte more is refused with
/// `TooLarge` naming both sizes, and the refusal writes nothing.
#[test]
fn a_record_of_exactly_the_maximum_size_is_kept_and_one_byte_more_refused() {
    let sim = SimStorage::new(21);
    let wal = open_sim(&sim, small_opts()).unwrap();
    let too_large = vec![7u8; RECORD_BYTES_MAX + 1];
    match wal.append(&too_large) {
        Err(Error::TooLarge { what, len, max }) => {
            assert_eq!(
                (what, len, max),
                ("record", too_large.len() as u64, RECORD_BYTES_MAX as u64)
            );
        }
        other => panic!("a record one byte over the limit gave {other:?}"),
    }
    drop(too_large);
    assert_eq!(wal.next_lsn(), 1, "the refused record took an LSN");
    let largest: Vec<u8> = (0..RECORD_BYTES_MAX).map(|i| (i % 251) as u8).collect();
    assert_eq!(wal.append(&largest).unwrap(), 1);
    wal.close().unwrap();
    let records = all_records(&open_sim(&sim.crash(), small_opts()).unwrap()).unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        records[0].1 == largest,
        "the largest record came back changed"
    );
}

/// The statistics follow the files (`common::assert_stats_match_files`), and `appends` counts
/// the records submitted.
fn assert_stats_and_appends(sim: &SimStorage, wal: &tasklog::wal::Wal, appends: u64, what: &str) {
    assert_stats_match_files(sim, wal, what);
    assert_eq!(wal.stats().appends, appends, "{what}: appends");
}

/// `segment_bytes_max` is a maximum a segment may reach, not one it must stay below: a record
/// that brings the active segment to exactly that size goes into it, the next one starts a new
/// segment; a first record larger than a segment goes alone into the empty segment (a batch
/// never spans segments). The statistics follow the files at every step.
#[test]
fn segments_fill_up_to_exactly_their_maximum_and_the_stats_follow_the_files() {
    let max = small_opts().segment_bytes_max;
    let sim = SimStorage::new(22);
    let wal = open_sim(&sim, small_opts()).unwrap();
    let header = segment_sizes(&sim)[0];
    assert_stats_and_appends(&sim, &wal, 0, "a new log");
    wal.append(&[1u8; 10]).unwrap();
    let after_one = segment_sizes(&sim)[0];
    let frame_overhead = after_one - header - 10;
    assert_stats_and_appends(&sim, &wal, 1, "one record");
    // Exactly what is left of the segment.
    let fill = (max - after_one - frame_overhead) as usize;
    wal.append(&vec![2u8; fill]).unwrap();
    assert_eq!(
        segment_sizes(&sim),
        vec![max],
        "a record that fits exactly rolled the segment"
    );
    assert_stats_and_appends(&sim, &wal, 2, "a full segment");
    wal.append(&[3u8; 10]).unwrap();
    assert_eq!(segment_sizes(&sim), vec![max, after_one]);
    assert_stats_and_appends(&sim, &wal, 3, "after the roll");
    wal.close().unwrap();

    let sim = SimStorage::new(23);
    let wal = open_sim(&sim, small_opts()).unwrap();
    let big = vec![4u8; max as usize + 1000];
    wal.append(&big).unwrap();
    assert_eq!(
        segment_sizes(&sim),
        vec![header + frame_overhead + big.len() as u64],
        "a first record larger than a segment did not go alone into the empty segment"
    );
    assert_stats_and_appends(&sim, &wal, 1, "an oversized first record");
    wal.append(&big).unwrap();
    assert_eq!(segment_sizes(&sim).len(), 2);
    assert_stats_and_appends(&sim, &wal, 2, "two oversized records");
    wal.close().unwrap();
}

/// What a process crash leaves: every file as the OS holds it (written, synced or not), as a
/// new disk.
fn process_crash_image(sim: &SimStorage) -> SimStorage {
    let image = SimStorage::new(99);
    for path in common::sim_segments(sim, &common::sim_dir()) {
        image.put_file(
            &path,
            sim.file_bytes(&path).expect("a listed segment has bytes"),
        );
    }
    image
}

/// docs/durability.md, modes: an append acknowledged under `Durability::Interval` survives a
/// process crash, i.e. it was written to the OS before `append` returned (only its fdatasync
/// waits for the interval). Fails if `Interval` acknowledged on buffering, as `Buffered` does.
#[test]
fn interval_mode_acknowledges_only_what_the_os_holds() {
    let opts = small_opts().durability(tasklog::wal::Durability::Interval(
        std::time::Duration::from_secs(3600),
    ));
    let sim = SimStorage::new(24);
    let wal = open_sim(&sim, opts.clone()).unwrap();
    for i in 1..=20 {
        wal.append(&common::payload(i)).unwrap();
        let after_kill = all_records(&open_sim(&process_crash_image(&sim), opts.clone()).unwrap());
        common::assert_prefix(&after_kill.unwrap(), i);
    }
    // Nothing was fsynced yet (the interval is an hour): a power cut may take all of it.
    assert_eq!(wal.stats().durable_lsn, 0);
    wal.close().unwrap();
}

/// Preallocation reserves room for the records being written, never past
/// `segment_bytes_max`: with preallocation on, no segment file grows beyond that size (the
/// reservation asked for is the end of the chunk being written, offset + length).
#[test]
fn preallocation_never_grows_a_segment_past_its_maximum() {
    let max = 1u64 << 20;
    let opts = small_opts().segment_bytes_max(max).preallocate(true);
    let sim = SimStorage::new(25);
    let wal = open_sim(&sim, opts.clone()).unwrap();
    let record = vec![5u8; 1000];
    for i in 1..=2500 {
        wal.append(&record).unwrap();
        // After every append: a wrong reservation is caught before it grows further.
        let sizes = segment_sizes(&sim);
        assert!(
            sizes.iter().all(|s| *s <= max),
            "after record {i} a segment was preallocated past {max} bytes: {sizes:?}"
        );
    }
    assert!(segment_sizes(&sim).len() >= 2);
    wal.close().unwrap();
    assert_eq!(
        all_records(&open_sim(&sim, opts).unwrap()).unwrap().len(),
        2500
    );
}
