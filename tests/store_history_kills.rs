//! Goal: each promise of the audit trail's storage (`src/store/history.rs`) that a deliberately
//! broken build used to pass (issue #23, cargo-mutants, session 14) has a test here that fails
//! when the promise is broken: a history whose older events stay in a snapshot file reads the
//! same however the file's reads are split; a snapshot file cut under a running store, or a
//! record miscounting its history's events, is corruption naming the file and the offset;
//! events after a reopen from a snapshot stay in the log; an event applied while a snapshot is
//! written is never dropped; a log answering with another record makes a history corrupt, not
//! wrong; a removed id created again is no longer counted as removed; a lease read from a v1
//! snapshot claims at the task's last start.
//!
//! Method: stores on the simulated disk (`SimStorage`), wrapped where a test needs a disk that
//! returns short reads; the v1 fixture loaded onto it; a log over a real `Wal` that answers
//! with the wrong record; a snapshot edited and resealed with good CRCs. The mutants each test kills are listed in docs/mutation-survivors.md
//! ("store/history.rs (session 14)").

mod common;
mod snapshot_images;

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::sim_store;
use tasklog::store::{Store, StoreOptions};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, Storage, StorageFile, Wal, WalOptions};
use tasklog::{Error, NewTask};

/// The most bytes one read of a snapshot file returns on [`ShortReads`].
const SNAPSHOT_READ_BYTES_MAX: usize = 5;

/// The simulated disk, except that a read of a snapshot file (`.snap`) returns at most
/// [`SNAPSHOT_READ_BYTES_MAX`] bytes, as `pread` may (a signal, a network file system, a FUSE
/// driver). A reader that does not loop, or loops from the wrong offset, reads wrong bytes.
#[derive(Debug)]
struct ShortReads {
    inner: SimStorage,
}

#[derive(Debug)]
struct ShortFile {
    inner: Box<dyn StorageFile>,
}

impl StorageFile for ShortFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(SNAPSHOT_READ_BYTES_MAX);
        self.inner.read_at(&mut buf[..len], offset)
    }
    storage_file_passes_to!(inner; write_all_at, sync_data, sync_all, set_len, len, allocate, zeros_from);
}

impl Storage for ShortReads {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let file = self.inner.open(path, mode)?;
        if path.extension().is_some_and(|e| e == "snap") {
            Ok(Box::new(ShortFile { inner: file }))
        } else {
            Ok(file)
        }
    }
    crate::storage_but_open_passes_to!(inner);
}

fn short_reads_store(sim: &SimStorage) -> Store {
    StoreOptions::new()
        .storage(Arc::new(ShortReads { inner: sim.clone() }))
        .segment_bytes_max(64 << 10)
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open("/db")
        .unwrap()
}

/// `n` tasks `t000`.. with a few events each (created, started, progress with a message,
/// completed or failed), so that every history is longer than one short read.
fn populate(store: &Store, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("t{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        store.submit(NewTask::new("job").id(id)).unwrap();
        store.start(id).unwrap();
        store
            .progress(id, 50, Some("half"), Some(&format!("row {i}")))
            .unwrap();
        if i % 2 == 0 {
            store
                .complete(id, Some(serde_json::json!({ "i": i })))
                .unwrap();
        }
    }
    ids
}

fn histories(store: &Store, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| serde_json::to_string(&store.history(id).unwrap()).unwrap())
        .collect()
}

/// `Arena::read` from disk: a history's bytes in a snapshot file are read in a loop until all
/// are there, each read continuing where the last one ended (kills `at + done` → `at - done`
/// in the `read_at` call: the second and later pieces read from before the history).
#[test]
fn histories_in_a_snapshot_file_read_whole_through_short_reads() {
    let sim = SimStorage::new(141);
    let store = short_reads_store(&sim);
    let ids = populate(&store, 12);
    let before = histories(&store, &ids);
    store.snapshot().unwrap();
    assert_eq!(
        histories(&store, &ids),
        before,
        "read from the snapshot file"
    );
    store.close().unwrap();
    let store = short_reads_store(&sim);
    assert!(store.recovery_report().snapshot_used.is_some());
    assert_eq!(histories(&store, &ids), before, "after reopening");
}

/// `Arena::read`'s end-of-file check: a snapshot file cut under a running store (another
/// program, a failing disk) makes reading a history it held `Corrupt`, naming the file and
/// the offset where it now ends for the history the cut went through, and never a later one
/// (kills `at + done` → `at - done` in the error's offset: it named a place before the cut,
/// inside bytes that read fine).
#[test]
fn a_history_cut_short_in_its_snapshot_file_names_where_the_file_ends() {
    for version in [3, 2] {
        cut_short(version);
    }
}

/// The cut, in a snapshot of `version`: in v2 exactly the history the cut goes through fails;
/// in v3 every history of the block it goes through does (here, one block holds them all),
/// each naming the cut.
fn cut_short(version: u32) {
    let sim = SimStorage::new(142);
    let mut store = sim_store(&sim);
    let ids = populate(&store, 30);
    let info = store.snapshot().unwrap();
    let mut whole = sim.file_bytes(&info.path).unwrap();
    if version == 2 {
        store.close().unwrap();
        drop(store);
        whole = snapshot_images::to_v2(&whole);
        sim.put_file(&info.path, whole.clone());
        store = sim_store(&sim);
        assert_eq!(
            store.recovery_report().snapshot_used.as_deref(),
            Some(&*info.path)
        );
    }
    // The history section is the file's last part: cut it in the middle of a history.
    let cut = whole.len() - 150;
    sim.put_file(&info.path, whole[..cut].to_vec());

    let (mut failed, mut at_the_cut) = (0, 0);
    for id in &ids {
        match store.history(id) {
            Ok(_) => {}
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!(file, info.path, "history of {id}");
                let offset = offset.expect("an offset");
                assert!(
                    offset >= cut as u64,
                    "history of {id}: damage reported at {offset}, before the cut at {cut}"
                );
                failed += 1;
                at_the_cut += usize::from(offset == cut as u64);
            }
            Err(other) => panic!("history of {id}: {other}"),
        }
    }
    match version {
        2 => assert_eq!(at_the_cut, 1, "exactly one history runs into the cut"),
        _ => assert!(
            failed == ids.len() && at_the_cut == failed,
            "{failed} histories failed, {at_the_cut} naming the cut"
        ),
    }
}

/// `History::push_ref` on a history loaded from a snapshot: events appended after a reopen
/// from a snapshot stay in the log and cost their position only (14 bytes each), as events
/// before any snapshot do (kills the guard `loaded.own.is_empty()` → `false`: such events
/// were copied into memory, 2,000 bytes each here; the history reads the same either way).
#[test]
fn events_after_a_reopen_from_a_snapshot_cost_their_position_not_their_bytes() {
    let sim = SimStorage::new(145);
    let store = sim_store(&sim);
    let ids = populate(&store, 20);
    store.snapshot().unwrap();
    store.close().unwrap();

    let store = sim_store(&sim);
    assert!(store.recovery_report().snapshot_used.is_some());
    let heap_before = store.history_heap_bytes();
    let message = "m".repeat(2000);
    let running: Vec<&String> = ids.iter().skip(1).step_by(2).collect();
    for id in &running {
        for percent in [60, 70, 80] {
            store.progress(id, percent, None, Some(&message)).unwrap();
        }
    }
    let added = running.len() * 3;
    let heap_growth = store.history_heap_bytes() - heap_before;
    assert!(
        heap_growth < added * 200,
        "{heap_growth} bytes of history memory for {added} events of 2,000 bytes kept in the log"
    );
    for id in &running {
        let events = store.history(id).unwrap();
        assert_eq!(events.len(), 6, "history of {id}");
        assert_eq!(events[5].details["message"], message.as_str());
    }
}

/// `History::is_empty` decides whether a created task reuses the id of a removed one: the
/// store's count of removed tasks whose history is kept (`stats().removed`) goes back down when
/// a removed id is created again, whose history then continues the old one (kills
/// `is_empty` → `true`: the count stayed at 1 with no removed task left).
#[test]
fn a_removed_id_created_again_is_no_longer_counted_as_removed() {
    let sim = SimStorage::new(146);
    let store = sim_store(&sim);
    store.submit(NewTask::new("job").id("a")).unwrap();
    store.submit(NewTask::new("job").id("b")).unwrap();
    store.remove("a", Some("done with it")).unwrap();
    assert_eq!(store.stats(None).unwrap().removed, 1);
    store.submit(NewTask::new("job").id("a")).unwrap();
    assert_eq!(store.stats(None).unwrap().removed, 0, "a is live again");
    let kinds: Vec<_> = store.history("a").unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["created", "removed", "created"]);
    store.close().unwrap();
    let store = sim_store(&sim);
    assert_eq!(store.stats(None).unwrap().removed, 0, "after replay");
}

/// `History::push_ref` on a history that holds event bytes of its own must not drop them:
/// a history loaded from a v1 snapshot keeps its bytes in memory; an event applied while a
/// snapshot is being written (after it was encoded) stays in memory as the history's own
/// tail; the next event is then appended as bytes too, and the history reads whole, now and
/// after reopening (kills the guard `loaded.own.is_empty()` → `true`: the tail was replaced by
/// positions in the log, losing the event applied during the snapshot).
#[test]
fn an_event_applied_while_a_snapshot_is_written_survives_the_next_event() {
    let sim = SimStorage::new(147);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1-snapshot");
    for sub in ["wal", "snapshots"] {
        for entry in std::fs::read_dir(fixture.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n != "LOCK") {
                let to = Path::new("/db").join(sub).join(path.file_name().unwrap());
                sim.put_file(&to, std::fs::read(&path).unwrap());
            }
        }
    }
    let open = |sim: &SimStorage| {
        StoreOptions::new()
            .storage(Arc::new(sim.clone()))
            .durability(tasklog::wal::Durability::Buffered)
            .snapshot_every_records(0)
            .snapshot_every_bytes(0)
            .open("/db")
            .unwrap()
    };
    let store = Arc::new(open(&sim));
    assert!(store.recovery_report().snapshot_used.is_some());
    let before = store.history("interrupted").unwrap().len();

    // The snapshot is encoded, then waits for the log's fsync: an event applied meanwhile is
    // in no snapshot and stays in memory.
    sim.hold_syncs();
    let snapshot = {
        let store = store.clone();
        std::thread::spawn(move || store.snapshot().unwrap())
    };
    while sim.syncs_held() == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    store.retry("interrupted").unwrap();
    sim.release_syncs();
    snapshot.join().unwrap();
    store.start("interrupted").unwrap();

    let kinds = |store: &Store| -> Vec<&'static str> {
        let events = store.history("interrupted").unwrap();
        events.iter().map(|e| e.kind).skip(before).collect()
    };
    assert_eq!(kinds(&store), ["retried", "started"]);
    Arc::into_inner(store).unwrap().close().unwrap();
    let store = open(&sim);
    assert_eq!(kinds(&store), ["retried", "started"], "after reopening");
}

/// A log over a local `Wal` that, once `swap` is set to `(asked, given)`, answers a read of
/// LSN `asked` with the record at LSN `given`: a log that does not hold what its LSNs say.
struct SwappedReads {
    wal: Wal,
    swap: Mutex<Option<(u64, u64)>>,
}

impl tasklog::store::Log for SwappedReads {
    crate::log_passes_to!(wal);
    fn reads_by_lsn(&self) -> bool {
        true
    }
    fn read_lsns(
        &self,
        lsns: &[u64],
        f: &mut dyn FnMut(u64, &[u8]) -> tasklog::Result<()>,
    ) -> tasklog::Result<()> {
        let Some((asked, given)) = *self.swap.lock().unwrap() else {
            return self.wal.read_lsns(lsns, f);
        };
        let mut other = Vec::new();
        self.wal.read_lsns(&[given], &mut |_, b| {
            other = b.to_vec();
            Ok(())
        })?;
        self.wal.read_lsns(lsns, &mut |lsn, b| {
            f(lsn, if lsn == asked { &other } else { b })
        })
    }
}

/// `History::events_from`: an event a history keeps in the log is read back only if the
/// record at its LSN is an event of the length the history noted; a log that answers with
/// another record makes the read `Corrupt` naming that LSN, never a history with another
/// task's event in it (kills the guard `body.len() == len` → `true`).
#[test]
fn a_log_answering_with_another_record_makes_the_history_corrupt_not_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(log_dir.path(), WalOptions::default().preallocate(false)).unwrap();
    let log = Arc::new(SwappedReads {
        wal,
        swap: Mutex::new(None),
    });
    let store = StoreOptions::new()
        .snapshot_every_records(0)
        .snapshot_every_bytes(0)
        .open_with_log(dir.path(), log.clone())
        .unwrap();
    store.submit(NewTask::new("job").id("a")).unwrap();
    let other = store
        .submit(NewTask::new("a longer title").id("b"))
        .unwrap();
    store.start("a").unwrap();
    let events = store.history("a").unwrap();
    assert_eq!(events.len(), 2);
    let start_lsn = events[1].lsn;

    *log.swap.lock().unwrap() = Some((start_lsn, other.last_lsn));
    match store.history("a") {
        Err(Error::Corrupt { lsn, .. }) => assert_eq!(lsn, Some(start_lsn)),
        other => panic!("a history read through a log holding another record: {other:?}"),
    }
}

/// A postcard varint at `at`: `(value, bytes)`.
fn varint_at(bytes: &[u8], at: usize) -> (u64, usize) {
    let (mut value, mut n) = (0u64, 0);
    while let Some(&b) = bytes.get(at + n) {
        value |= u64::from(b & 0x7f) << (7 * n);
        n += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    (value, n)
}

/// `History::check_count` for a history read from a snapshot: a record whose event count
/// disagrees with the events its bytes hold (a snapshot written by a faulty build, resealed
/// with good CRCs) makes reading that history `Corrupt`, naming the snapshot file and the
/// offset where that history starts in it (kills `file_offset + start` → `-`, `*`: the offset
/// named another place of the file).
#[test]
fn a_history_whose_record_miscounts_its_events_is_corrupt_at_its_own_offset() {
    for version in [3, 2] {
        miscounted(version);
    }
}

fn miscounted(version: u32) {
    let sim = SimStorage::new(148);
    let store = sim_store(&sim);
    store.submit(NewTask::new("job").id("a")).unwrap();
    store.remove("a", None).unwrap();
    store.submit(NewTask::new("job").id("b")).unwrap();
    store.start("b").unwrap();
    store.progress("b", 30, None, Some("thirty")).unwrap();
    let info = store.snapshot().unwrap();
    store.close().unwrap();

    // Record "b" in the tasks section: id (length 1, "b"), history_offset, history_len and
    // history_count as varints. Its count 3 becomes 1.
    let mut image = sim.file_bytes(&info.path).unwrap();
    if version == 2 {
        image = snapshot_images::to_v2(&image);
    }
    let u64_at = |at: usize| u64::from_le_bytes(image[at..at + 8].try_into().unwrap());
    let (tasks_len, history_len) = (u64_at(32) as usize, u64_at(40));
    let tasks = 64..64 + tasks_len;
    let id_at = image[tasks.clone()]
        .windows(2)
        .position(|w| w == [1, b'b'])
        .unwrap()
        + 64
        + 2;
    let (b_offset, n) = varint_at(&image, id_at);
    let (_, m) = varint_at(&image, id_at + n);
    let count_at = id_at + n + m;
    assert!(b_offset > 0, "a's history comes first");
    assert_eq!(image[count_at], 3, "b's history_count");
    image[count_at] = 1;
    tasklog::store::snapshot::reseal_for_fuzzing(&mut image);
    let history_start = image.len() as u64 - history_len;
    sim.put_file(&info.path, image);

    let store = sim_store(&sim);
    assert_eq!(
        store.recovery_report().snapshot_used.as_deref(),
        Some(&*info.path)
    );
    match store.history("b") {
        // v2 names the history's own place; v3 the block holding it (the only one, stored
        // after the section's header and one index entry) and the history's place in the
        // uncompressed histories.
        Err(Error::Corrupt {
            file,
            offset,
            reason,
            ..
        }) => {
            assert_eq!(file, info.path);
            match version {
                2 => assert_eq!(offset, Some(history_start + b_offset)),
                _ => {
                    assert_eq!(offset, Some(history_start + 16 + 8));
                    assert!(
                        reason.contains(&format!("uncompressed byte {b_offset} ")),
                        "{reason}"
                    );
                }
            }
        }
        other => panic!("a history of 3 events recorded as 1: {other:?}"),
    }
    assert_eq!(
        store.history("a").unwrap().len(),
        2,
        "a's history is intact"
    );
}

/// The v1 snapshot fixture with a lease `("w", expires_at_ms)` given to task "done" (v1 did
/// not store the claim's LSN): its lease fields, `None, None` before the history id, become
/// `Some`, and the header's body length and both CRCs are made right again.
fn v1_snapshot_with_a_lease(expires_at_ms: i64) -> Vec<u8> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store-v1-snapshot/snapshots/snap-00000000000000000022.snap");
    let image = std::fs::read(fixture).unwrap();
    let (header, body) = image.split_at(40);
    // `.. lease_owner: None, lease_expires_at_ms: None, session: 0, history.id: "done" ..`
    let at = body
        .windows(8)
        .position(|w| w == b"\0\0\0\x04done")
        .unwrap();
    let mut lease = vec![1, 1, b'w', 1];
    let mut zigzag = ((expires_at_ms << 1) ^ (expires_at_ms >> 63)) as u64;
    while zigzag >= 0x80 {
        lease.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    lease.push(zigzag as u8);
    let mut new_body = body[..at].to_vec();
    new_body.extend_from_slice(&lease);
    new_body.extend_from_slice(&body[at + 2..]);
    let mut out = header.to_vec();
    out[24..32].copy_from_slice(&(new_body.len() as u64).to_le_bytes());
    out.extend_from_slice(&new_body);
    tasklog::store::snapshot::reseal_for_fuzzing(&mut out);
    out
}

/// `History::last_start_lsn`: a lease read from a v1 snapshot (which did not store the
/// claim's LSN) gets as its claim the LSN of the task's last move from pending to running, the
/// fencing token a worker's fenced mutations are checked against (kills `last_start_lsn` →
/// `None`, `Some(0)`, `Some(1)`, and `&&` → `||`, either `==` → `!=` in its test: another
/// event's LSN, or none, became the claim).
#[test]
fn a_lease_from_a_v1_snapshot_claims_at_its_last_start() {
    let sim = SimStorage::new(149);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1-snapshot");
    let wal = fixture.join("wal/00000000000000000001.seg");
    sim.put_file(
        Path::new("/db/wal/00000000000000000001.seg"),
        std::fs::read(wal).unwrap(),
    );
    sim.put_file(
        Path::new("/db/snapshots/snap-00000000000000000022.snap"),
        v1_snapshot_with_a_lease(4_102_444_800_000),
    );
    let store = sim_store(&sim);
    assert!(store.recovery_report().snapshot_used.is_some());
    let history = store.history("done").unwrap();
    let started: Vec<u64> = history
        .iter()
        .filter(|e| e.kind == "started")
        .map(|e| e.lsn)
        .collect();
    assert_eq!(started.len(), 1, "{history:?}");
    assert!(
        history.last().unwrap().lsn > started[0],
        "later events exist"
    );
    let lease = store.get("done").unwrap().lease.expect("the lease given");
    assert_eq!(lease.owner, "w");
    assert_eq!(lease.claim_lsn, started[0]);
}
