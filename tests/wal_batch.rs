//! Goal: `append_batch` is atomic: after any crash all or none of a batch replays. Method: cut
//! the segment at every offset inside a batch (unfinished batch at the end: a torn tail, none
//! of it replays); tear the write of a batch on the simulated disk and power-cut; check a batch
//! never spans segments; and check that an unfinished batch followed by other records is
//! corruption, not a torn tail.

mod common;
use common::*;

use std::sync::Arc;

use tasklog::wal::Storage;
use tasklog::wal::sim::SimStorage;

fn batch_payloads(first: u64, n: u64) -> Vec<Vec<u8>> {
    (first..first + n).map(payload).collect()
}

#[test]
fn batch_cut_anywhere_replays_none_of_it() {
    let sim = SimStorage::new(5);
    let wal = open_sim(&sim, small_opts().segment_bytes_max(1 << 20)).unwrap();
    for i in 1..=10 {
        wal.append(&payload(i)).unwrap();
    }
    let seg = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let before = sim.file_bytes(&seg).unwrap().len();
    let batch = batch_payloads(11, 20);
    let refs: Vec<&[u8]> = batch.iter().map(|v| v.as_slice()).collect();
    wal.append_batch(&refs).unwrap();
    wal.close().unwrap();
    let full = sim.file_bytes(&seg).unwrap();
    for cut in before..full.len() {
        let disk = SimStorage::new(cut as u64);
        disk.create_dir_all(&sim_dir()).unwrap();
        disk.put_file(&seg, full[..cut].to_vec());
        let wal = open_sim(&disk, small_opts()).unwrap();
        assert_prefix(&all_records(&wal).unwrap(), 10);
    }
    let disk = SimStorage::new(0);
    disk.create_dir_all(&sim_dir()).unwrap();
    disk.put_file(&seg, full.clone());
    assert_prefix(
        &all_records(&open_sim(&disk, small_opts()).unwrap()).unwrap(),
        30,
    );
}

#[test]
fn torn_batch_write_then_power_cut_replays_none_of_it() {
    for seed in 0..50u64 {
        let sim = SimStorage::new(seed);
        sim.set_torn_crash(Some(512));
        let wal = open_sim(&sim, small_opts().segment_bytes_max(1 << 20)).unwrap();
        for i in 1..=3 {
            wal.append(&payload(i)).unwrap();
        }
        let batch = batch_payloads(4, 100);
        let refs: Vec<&[u8]> = batch.iter().map(|v| v.as_slice()).collect();
        sim.tear_nth_write(1);
        assert!(wal.append_batch(&refs).is_err());
        let recs = all_records(&open_sim(&sim.crash(), small_opts()).unwrap()).unwrap();
        assert_prefix(&recs, 3);
    }
}

#[test]
fn batches_never_span_segments_and_big_ones_get_their_own() {
    let sim = SimStorage::new(1);
    let wal = open_sim(&sim, small_opts()).unwrap();
    let mut n = 0;
    for round in 0..30u64 {
        let size = if round % 7 == 0 { 150 } else { 1 + round % 9 };
        let batch = batch_payloads(n + 1, size);
        let refs: Vec<&[u8]> = batch.iter().map(|v| v.as_slice()).collect();
        assert_eq!(wal.append_batch(&refs).unwrap(), n + 1);
        n += size;
    }
    wal.close().unwrap();
    // Every segment must hold whole batches: each one replays alone without complaint.
    let segs = sim_segments(&sim, &sim_dir());
    assert!(segs.len() > 5);
    let wal = open_sim(&sim, small_opts()).unwrap();
    assert_prefix(&all_records(&wal).unwrap(), n);
    drop(wal);
    let mut bounds: Vec<u64> = segs
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    bounds.remove(0);
    let mut starts = vec![1u64];
    let mut acc = 0;
    for round in 0..30u64 {
        acc += if round % 7 == 0 { 150 } else { 1 + round % 9 };
        starts.push(acc + 1);
    }
    for b in bounds {
        assert!(
            starts.contains(&b),
            "segment starting at {b} splits a batch"
        );
    }
}

#[test]
fn unfinished_batch_followed_by_records_is_corruption() {
    let sim = SimStorage::new(2);
    let wal = open_sim(&sim, small_opts().segment_bytes_max(1 << 20)).unwrap();
    wal.append(&payload(1)).unwrap();
    let seg = sim_segments(&sim, &sim_dir()).pop().unwrap();
    let after_one = sim.file_bytes(&seg).unwrap().len();
    let batch = batch_payloads(2, 3);
    let refs: Vec<&[u8]> = batch.iter().map(|v| v.as_slice()).collect();
    wal.append_batch(&refs).unwrap();
    let after_batch = sim.file_bytes(&seg).unwrap().len();
    wal.append(&payload(5)).unwrap();
    wal.close().unwrap();
    let mut bytes = sim.file_bytes(&seg).unwrap();
    // Remove the batch's end frame by rewriting the log without it: splice out the last frame of
    // the batch and renumber nothing, so the following record's LSN is out of order too.
    let frame_len = 24 + payload(4).len();
    bytes.drain(after_batch - frame_len..after_batch);
    let _ = after_one;
    let disk = SimStorage::new(0);
    disk.create_dir_all(&sim_dir()).unwrap();
    disk.put_file(&seg, bytes);
    let err =
        tasklog::wal::Wal::open_with_storage(Arc::new(disk), sim_dir(), small_opts()).unwrap_err();
    assert!(matches!(err, tasklog::Error::Corrupt { .. }), "{err}");
}
