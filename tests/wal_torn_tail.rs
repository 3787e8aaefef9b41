//! Goal: a log cut at ANY byte offset inside its last records recovers exactly the whole
//! records before the cut, and a torn tail is treated differently from mid-log corruption.
//! Method: write a log on the simulated disk, then for every cut offset in the last few
//! records build a fresh disk holding the truncated segment (also with zero fill after the cut,
//! as preallocated space would look), open, and compare the replay with the expected prefix.

mod common;
use common::*;

use tasklog::wal::sim::SimStorage;

fn written_log(records: u64) -> (Vec<u8>, Vec<u64>) {
    let sim = SimStorage::new(1);
    let wal = open_sim(&sim, small_opts().segment_bytes_max(1 << 20)).unwrap();
    let mut ends = Vec::new();
    for i in 1..=records {
        wal.append(&payload(i)).unwrap();
        let seg = sim_segments(&sim, &sim_dir()).pop().unwrap();
        ends.push(sim.file_bytes(&seg).unwrap().len() as u64);
    }
    wal.close().unwrap();
    let seg = sim_segments(&sim, &sim_dir()).pop().unwrap();
    (sim.file_bytes(&seg).unwrap(), ends)
}

#[test]
fn truncating_at_every_offset_recovers_the_whole_records_before_it() {
    let (bytes, ends) = written_log(40);
    let start = ends[ends.len() - 6];
    for cut in start..=bytes.len() as u64 {
        for zero_fill in [0usize, 300] {
            let sim = SimStorage::new(cut);
            let dir = sim_dir();
            use tasklog::wal::Storage;
            sim.create_dir_all(&dir).unwrap();
            let mut image = bytes[..cut as usize].to_vec();
            image.resize(image.len() + zero_fill, 0);
            let seg = dir.join(format!("{:020}.seg", 1));
            sim.put_file(&seg, image);
            let whole = ends.iter().filter(|e| **e <= cut).count() as u64;
            let (wal, report) = tasklog::wal::Wal::open_with_storage(
                std::sync::Arc::new(sim.clone()),
                &dir,
                small_opts(),
            )
            .unwrap();
            assert_eq!(report.next_lsn, whole + 1, "cut at {cut}");
            let torn = cut != ends[whole as usize - 1];
            assert_eq!(report.torn_at.is_some(), torn, "cut at {cut}: {report:?}");
            assert_prefix(&all_records(&wal).unwrap(), whole);
            // The log keeps working after the cut.
            assert_eq!(wal.append(&payload(whole + 1)).unwrap(), whole + 1);
            assert_prefix(&all_records(&wal).unwrap(), whole + 1);
        }
    }
}

#[test]
fn torn_tail_is_cut_but_mid_log_corruption_fails_open() {
    let (bytes, ends) = written_log(20);
    use tasklog::wal::Storage;
    // Garbage in the last record only: a torn tail.
    let mut torn = bytes.clone();
    let last_start = ends[18] as usize;
    torn[last_start + 30] ^= 0x55;
    let sim = SimStorage::new(0);
    sim.create_dir_all(&sim_dir()).unwrap();
    sim.put_file(&sim_dir().join(format!("{:020}.seg", 1)), torn);
    let (wal, report) = tasklog::wal::Wal::open_with_storage(
        std::sync::Arc::new(sim.clone()),
        sim_dir(),
        small_opts(),
    )
    .unwrap();
    assert_eq!(report.torn_at.as_ref().map(|t| t.1), Some(ends[18]));
    assert!(report.torn_bytes_cut > 0);
    assert_prefix(&all_records(&wal).unwrap(), 19);
    drop(wal);

    // The same damage in a middle record, followed by valid records: corruption.
    let mut mid = bytes.clone();
    let mid_start = ends[9] as usize;
    mid[mid_start + 30] ^= 0x55;
    let sim = SimStorage::new(0);
    sim.create_dir_all(&sim_dir()).unwrap();
    let seg = sim_dir().join(format!("{:020}.seg", 1));
    sim.put_file(&seg, mid);
    let err = tasklog::wal::Wal::open_with_storage(
        std::sync::Arc::new(sim.clone()),
        sim_dir(),
        small_opts(),
    )
    .unwrap_err();
    match err {
        tasklog::Error::Corrupt {
            file, offset, lsn, ..
        } => {
            assert_eq!(file, seg);
            assert_eq!(offset, Some(ends[9]));
            assert_eq!(lsn, Some(11));
        }
        other => panic!("expected Corrupt, got {other}"),
    }
}

#[test]
fn a_segment_whose_header_never_reached_the_disk_is_replaced() {
    use tasklog::wal::Storage;
    // The only segment, never finished: the log starts again at that segment's LSN.
    for (name_lsn, extra) in [(1u64, 0usize), (500, 0), (500, 4096)] {
        let sim = SimStorage::new(0);
        sim.create_dir_all(&sim_dir()).unwrap();
        let seg = sim_dir().join(format!("{name_lsn:020}.seg"));
        sim.put_file(&seg, vec![0; extra]);
        let wal = open_sim(&sim, small_opts()).unwrap();
        assert_eq!((wal.first_lsn(), wal.next_lsn()), (name_lsn, name_lsn));
        assert_eq!(wal.append(b"x").unwrap(), name_lsn);
    }
    // The last of several segments, never finished: removed, the log continues before it.
    let sim = SimStorage::new(0);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=200 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    sim.put_file(&sim_dir().join(format!("{:020}.seg", 201)), Vec::new());
    let (wal, report) = tasklog::wal::Wal::open_with_storage(
        std::sync::Arc::new(sim.clone()),
        sim_dir(),
        small_opts(),
    )
    .unwrap();
    assert_eq!(report.next_lsn, 201);
    assert!(report.torn_at.is_some());
    assert_prefix(&all_records(&wal).unwrap(), 200);
}

#[test]
fn a_zeroed_header_in_front_of_records_is_corruption_not_an_unfinished_segment() {
    let sim = SimStorage::new(0);
    let wal = open_sim(&sim, small_opts()).unwrap();
    for i in 1..=200 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let last = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let mut bytes = sim.file_bytes(&last).unwrap();
    bytes[..48].fill(0);
    sim.put_file(&last, bytes);
    match open_sim(&sim, small_opts()) {
        Err(tasklog::Error::Corrupt { file, .. }) => assert_eq!(file, last),
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
    assert!(
        sim.file_bytes(&last).is_some(),
        "the damaged segment must not be deleted"
    );
}
