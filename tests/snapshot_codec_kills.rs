//! Goal: each promise of the snapshot codecs (`src/store/snapshot/v1.rs`, `v2.rs`, `v2/`) that
//! a deliberately broken build used to pass (issue #23, `scripts/mutants_in_tree.py`, session
//! 15) has a test here that fails when the promise is broken: every limit read from a snapshot
//! header (the LSN, the body size, the record count) holds at exactly its maximum and refuses
//! one past it, in both formats (docs/format.md); a damaged header field is named at its
//! offset; an image decodes to what was encoded.
//!
//! Method: images built byte by byte here (header, sections, CRCs computed as the format says),
//! so that one rule is broken while every checksum is good, decoded through the public
//! `snapshot::decode`. The mutants each test kills are listed in docs/mutation-survivors.md
//! ("store/snapshot codecs (session 15)").

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::sim_store;
use tasklog::store::StoreOptions;
use tasklog::store::snapshot::{self, LSN_MAX, SNAPSHOT_MAGIC};
use tasklog::wal::sim::SimStorage;
use tasklog::wal::{OpenMode, StdStorage, Storage, StorageFile, Wal, WalOptions};
use tasklog::{Error, NewTask};

/// Where error messages say the image came from.
const PATH: &str = "/db/snapshots/snap-00000000000000000001.snap";

/// A v1 image (docs/format.md, "Snapshot format v1"): the 40-byte header with both CRCs, and a
/// body holding no live task and the (empty) histories of the removed tasks `removed`,
/// applied at `lsn`.
fn v1_image(lsn: u64, removed: &[&str]) -> Vec<u8> {
    // `HistoryV1`: id, event count, arena bytes.
    let removed: Vec<(&str, u32, Vec<u8>)> = removed.iter().map(|id| (*id, 0, vec![])).collect();
    let body = postcard::to_allocvec(&(
        lsn,
        Vec::<u8>::new(),
        removed,
        Vec::<(String, String)>::new(),
        Vec::<u64>::new(),
    ))
    .unwrap();
    let mut image = SNAPSHOT_MAGIC.to_vec();
    image.extend_from_slice(&1u32.to_le_bytes()); // 8: version
    image.extend_from_slice(&0u32.to_le_bytes()); // 12: flags
    image.extend_from_slice(&lsn.to_le_bytes()); // 16: lsn
    image.extend_from_slice(&(body.len() as u64).to_le_bytes()); // 24: body_len
    image.extend_from_slice(&crc32fast::hash(&body).to_le_bytes()); // 32: body_crc
    let header_crc = crc32fast::hash(&image);
    image.extend_from_slice(&header_crc.to_le_bytes()); // 36: header_crc
    image.extend_from_slice(&body);
    image
}

/// The fields of a v2 header (docs/format.md, "Header v2") that a test may set to anything.
#[derive(Clone, Copy)]
struct V2Header {
    lsn: u64,
    flags: u32,
    records: u64,
    /// `None`: the tasks section's real length.
    tasks_len: Option<u64>,
    reserved: u32,
}

impl V2Header {
    fn at(lsn: u64) -> Self {
        V2Header {
            lsn,
            flags: 0,
            records: 0,
            tasks_len: None,
            reserved: 0,
        }
    }
}

/// A v2 image: the 64-byte header (section CRCs and header CRC good) then `tasks` and
/// `history`.
fn v2_image(h: V2Header, tasks: &[u8], history: &[u8]) -> Vec<u8> {
    let mut image = SNAPSHOT_MAGIC.to_vec();
    image.extend_from_slice(&2u32.to_le_bytes()); // 8: version
    image.extend_from_slice(&h.flags.to_le_bytes()); // 12: flags
    image.extend_from_slice(&h.lsn.to_le_bytes()); // 16: lsn
    image.extend_from_slice(&h.records.to_le_bytes()); // 24: records
    let tasks_len = h.tasks_len.unwrap_or(tasks.len() as u64);
    image.extend_from_slice(&tasks_len.to_le_bytes()); // 32: tasks_len
    image.extend_from_slice(&(history.len() as u64).to_le_bytes()); // 40: history_len
    image.extend_from_slice(&crc32fast::hash(tasks).to_le_bytes()); // 48: tasks_crc
    image.extend_from_slice(&crc32fast::hash(history).to_le_bytes()); // 52: history_crc
    image.extend_from_slice(&h.reserved.to_le_bytes()); // 56: reserved
    let header_crc = crc32fast::hash(&image);
    image.extend_from_slice(&header_crc.to_le_bytes()); // 60: header_crc
    image.extend_from_slice(tasks);
    image.extend_from_slice(history);
    image
}

/// The end of every tasks section: no idempotency key, no closed session.
const EMPTY_TAIL: [u8; 2] = [0, 0];

/// The offset a `Corrupt` error names, or a panic saying what came instead.
fn corrupt_offset(what: &str, result: tasklog::Result<tasklog::store::state::State>) -> u64 {
    match result {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, Path::new(PATH), "{what}");
            offset.unwrap_or_else(|| panic!("{what}: no offset named"))
        }
        Err(e) => panic!("{what}: not Corrupt but {e:?}"),
        Ok(_) => panic!("{what}: taken as good"),
    }
}

/// `lsn ≤ 2^63 − 1` (docs/format.md): a snapshot at exactly `LSN_MAX` is read, in both
/// formats; one at `LSN_MAX + 1` is corruption naming the header's LSN field (offset 16).
/// Kills `lsn > LSN_MAX` → `==` / `>=` / `<` in `v1::decode` and `Header::decode` (v2): a
/// store whose log reached the last LSN could no longer open its own snapshot, or an
/// impossible LSN was taken for the point to replay from.
#[test]
fn a_snapshot_at_lsn_max_is_read_and_one_past_is_refused_in_both_formats() {
    let path = Path::new(PATH);
    for (format, at_max, past_max) in [
        ("v1", v1_image(LSN_MAX, &[]), v1_image(LSN_MAX + 1, &[])),
        (
            "v2",
            v2_image(V2Header::at(LSN_MAX), &EMPTY_TAIL, &[]),
            v2_image(V2Header::at(LSN_MAX + 1), &EMPTY_TAIL, &[]),
        ),
    ] {
        let state =
            snapshot::decode(path, &at_max).unwrap_or_else(|e| panic!("{format} at LSN_MAX: {e}"));
        assert_eq!(state.applied_lsn, LSN_MAX, "{format}");
        assert!(state.is_empty(), "{format}");
        let offset = corrupt_offset(format, snapshot::decode(path, &past_max));
        assert_eq!(offset, 16, "{format}: one past LSN_MAX");
    }
}

/// A v1 snapshot whose removed tasks' histories outnumber its live tasks (a store that removed
/// most of what it ran) reads back with every history. Kills `tasks.len() + removed.len()` →
/// `-` in `v1::into_state`'s reservation: the subtraction underflows and the load panics, so
/// such a store could not be opened after an upgrade.
#[test]
fn a_v1_snapshot_with_more_removed_histories_than_tasks_is_read() {
    let image = v1_image(7, &["gone-1", "gone-2"]);
    let state = snapshot::decode(Path::new(PATH), &image).unwrap();
    assert_eq!(state.applied_lsn, 7);
    assert_eq!(state.removed_len(), 2);
    for id in ["gone-1", "gone-2"] {
        assert!(
            state.history(id).is_some(),
            "the history of {id} is missing"
        );
    }
}

/// The flags (offset 12) and the reserved field (offset 56) of a v2 header must both be zero:
/// a file that sets either was written by a format this build does not know, and is refused
/// at offset 12 rather than read as if the bits meant nothing. Kills `||` → `&&` in
/// `Header::decode` (either field alone was let through).
#[test]
fn a_v2_header_with_flags_or_reserved_bits_set_is_refused() {
    let path = Path::new(PATH);
    let plain = V2Header::at(5);
    assert!(snapshot::decode(path, &v2_image(plain, &EMPTY_TAIL, &[])).is_ok());
    for (what, h) in [
        ("flags", V2Header { flags: 1, ..plain }),
        (
            "reserved",
            V2Header {
                reserved: 1 << 31,
                ..plain
            },
        ),
    ] {
        let offset = corrupt_offset(what, snapshot::decode(path, &v2_image(h, &EMPTY_TAIL, &[])));
        assert_eq!(offset, 12, "{what}");
    }
}

/// The sections of a v2 snapshot may hold `SNAPSHOT_BYTES_MAX` bytes together and no more: a
/// header claiming exactly that much goes on to the length check (here `Corrupt` at offset 32:
/// the image is far shorter), one byte more is `TooLarge` before anything else. Kills `b >
/// SNAPSHOT_BYTES_MAX` → `==` / `>=` in `Header::decode` (a snapshot of exactly the largest
/// size refused as too large).
#[test]
fn v2_sections_of_exactly_the_size_limit_pass_the_limit_and_one_byte_more_does_not() {
    let path = Path::new(PATH);
    let claim = |tasks_len| V2Header {
        tasks_len: Some(tasks_len),
        ..V2Header::at(5)
    };
    let at_limit = v2_image(claim(snapshot::SNAPSHOT_BYTES_MAX), &EMPTY_TAIL, &[]);
    assert_eq!(
        corrupt_offset("at the limit", snapshot::decode(path, &at_limit)),
        32
    );
    let over = v2_image(claim(snapshot::SNAPSHOT_BYTES_MAX + 1), &EMPTY_TAIL, &[]);
    match snapshot::decode(path, &over) {
        Err(Error::TooLarge { len, max, .. }) => {
            assert_eq!(
                (len, max),
                (
                    snapshot::SNAPSHOT_BYTES_MAX + 1,
                    snapshot::SNAPSHOT_BYTES_MAX
                )
            );
        }
        other => panic!("one byte over the limit: {other:?}"),
    }
}

/// The smallest record a tasks section can hold is 5 bytes, so a header may count at most
/// `tasks_len / 5` records (checked before anything is reserved). A section holding exactly
/// that many (one removed task "a" with an empty history: 6 bytes, and the 2-byte tail: 8
/// bytes, 8 / 5 = 1) is read; a count of one more is refused at the count's offset (24).
/// Kills `records > tasks_len / RECORD_BYTES_MIN` → `==` / `>=` in `Header::decode`.
#[test]
fn a_v2_record_count_at_its_bound_is_read_and_one_more_is_refused() {
    let path = Path::new(PATH);
    // id "a", history offset 0, length 0, count 0, option tag 0 (removed); then the tail.
    let tasks = [1, b'a', 0, 0, 0, 0, 0, 0];
    let count = |records| V2Header {
        records,
        ..V2Header::at(5)
    };
    let state = snapshot::decode(path, &v2_image(count(1), &tasks, &[]))
        .unwrap_or_else(|e| panic!("one record in 8 bytes: {e}"));
    assert_eq!(state.removed_len(), 1);
    assert!(state.history("a").is_some());
    let offset = corrupt_offset(
        "two records",
        snapshot::decode(path, &v2_image(count(2), &tasks, &[])),
    );
    assert_eq!(offset, 24);
}

/// The golden v2 fixture's newest snapshot: its path and bytes.
fn golden_v2_image() -> (PathBuf, Vec<u8>) {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v2-snapshot/snapshots");
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    snaps.sort();
    let path = snaps.pop().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// A byte changed inside either section of a v2 snapshot (the header's checksums left as they
/// were) is refused as a checksum mismatch at the section's start, whether the image is read
/// from its file or decoded in memory; never decoded into different tasks or histories.
/// Kills `Header::check_crc` → `Ok(())` (both sections' CRCs unchecked in memory, the tasks
/// section's when read from a file).
#[test]
fn a_changed_byte_in_either_v2_section_is_a_checksum_mismatch_at_that_section() {
    let (fixture, image) = golden_v2_image();
    let tasks_len = u64::from_le_bytes(image[32..40].try_into().unwrap()) as usize;
    let history_at = 64 + tasks_len;
    assert!(image.len() > history_at + 2, "the fixture has histories");
    let dir = tempfile::tempdir().unwrap();
    for (section, at, start) in [
        ("tasks", 64 + tasks_len / 2, 64),
        (
            "history",
            history_at + (image.len() - history_at) / 2,
            history_at,
        ),
    ] {
        let mut damaged = image.clone();
        damaged[at] ^= 0x20;
        let what = format!("{section} section, byte {at}, in memory");
        match snapshot::decode(&fixture, &damaged) {
            Err(Error::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, Some(start as u64), "{what}: {reason}");
                assert!(reason.contains("checksum"), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let path = dir.path().join(format!("{section}.snap"));
        std::fs::write(&path, &damaged).unwrap();
        let what = format!("{section} section, byte {at}, from the file");
        match snapshot::read(&StdStorage, &path) {
            Err(Error::Corrupt { offset, reason, .. }) => {
                assert_eq!(offset, Some(start as u64), "{what}: {reason}");
                assert!(reason.contains("checksum"), "{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A v2 tasks section of removed tasks with empty histories, one record per id (id length,
/// id, history offset 0, length 0, count 0, option tag `tag`), then the empty tail.
fn removed_records(ids: &[(&str, u8)]) -> Vec<u8> {
    let mut tasks = Vec::new();
    for (id, tag) in ids {
        tasks.push(id.len() as u8);
        tasks.extend_from_slice(id.as_bytes());
        tasks.extend_from_slice(&[0, 0, 0, *tag]);
    }
    tasks.extend_from_slice(&EMPTY_TAIL);
    tasks
}

/// A damaged task record is named at its own offset in the file (here the second record, at
/// 64 + 6 = 70), for each way a record can be wrong with good checksums: an option tag that is
/// neither 0 nor 1, an id listed twice (the empty id too), ids out of order. Kills the offset
/// arithmetic of the window and `p >= r.id` → `>` in `next_record` (an id listed twice let
/// through, its second record silently replacing the first), and an empty previous id taken
/// for none (two empty ids let through, one id in two slots).
#[test]
fn a_damaged_v2_task_record_is_named_at_its_own_offset() {
    let path = Path::new(PATH);
    let two = V2Header {
        records: 2,
        ..V2Header::at(5)
    };
    let good = v2_image(two, &removed_records(&[("a", 0), ("b", 0)]), &[]);
    assert_eq!(snapshot::decode(path, &good).unwrap().removed_len(), 2);
    for (what, ids, reason, at) in [
        ("option tag 2", [("a", 0), ("b", 2)], "option tag 2", 70),
        ("listed twice", [("a", 0), ("a", 0)], "listed twice", 70),
        // The empty id is an id like any other, not "no previous id" (64 + 5 = 69).
        (
            "empty id listed twice",
            [("", 0), ("", 0)],
            "listed twice",
            69,
        ),
        ("out of order", [("b", 0), ("a", 0)], "out of order", 70),
    ] {
        match snapshot::decode(path, &v2_image(two, &removed_records(&ids), &[])) {
            Err(Error::Corrupt {
                offset, reason: r, ..
            }) => {
                assert_eq!(offset, Some(at), "{what}: {r}");
                assert!(r.contains(reason), "{what}: {r}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // A record cut before its option tag (the last byte of the section): named at its start.
    let cut = [1, b'a', 0, 0, 0, 0, 1, b'b', 0, 0, 0];
    match snapshot::decode(path, &v2_image(two, &cut, &[])) {
        Err(Error::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, Some(70), "cut record: {reason}");
            assert!(reason.contains("before its option tag"), "{reason}");
        }
        other => panic!("cut record: {other:?}"),
    }
}

/// A log over a local `Wal` that, once `swap` is set to `(asked, given)`, delivers the record
/// at LSN `given` in place of the one at `asked` when replayed: a log that does not hold what
/// its LSNs say.
struct SwappedReplay {
    wal: Wal,
    swap: Mutex<Option<(u64, u64)>>,
}

impl tasklog::store::Log for SwappedReplay {
    crate::log_but_replay_passes_to!(wal);
    fn reads_by_lsn(&self) -> bool {
        true
    }
    fn replay(
        &self,
        from: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> tasklog::Result<()>,
    ) -> tasklog::Result<u64> {
        let Some((asked, given)) = *self.swap.lock().unwrap() else {
            return self.wal.replay(from, f);
        };
        let mut other = Vec::new();
        self.wal.read_lsns(&[given], &mut |_, b| {
            other = b.to_vec();
            Ok(())
        })?;
        self.wal.replay(from, &mut |lsn, b| {
            f(lsn, if lsn == asked { &other } else { b })
        })
    }
}

/// A snapshot copies the events that histories keep in the log into its history section; if
/// the log answers an event's LSN with another event (of another length), the snapshot is
/// refused as `Corrupt` naming that LSN, never written with another task's event in a
/// history. Kills `&&` → `||` in `fill_from_log`'s check of the record (`tag == TAG_EVENT &&
/// body.len() == place.event_len()`).
#[test]
fn a_snapshot_refuses_a_log_event_that_is_not_the_one_a_history_points_at() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(log_dir.path(), WalOptions::default().preallocate(false)).unwrap();
    let log = Arc::new(SwappedReplay {
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
        .submit(NewTask::new("a much longer title than the first").id("b"))
        .unwrap();
    store.start("a").unwrap();
    let start_lsn = store.history("a").unwrap()[1].lsn;

    *log.swap.lock().unwrap() = Some((start_lsn, other.last_lsn));
    match store.snapshot() {
        Err(Error::Corrupt { lsn, .. }) => assert_eq!(lsn, Some(start_lsn)),
        other => panic!("a snapshot through a log holding another event: {other:?}"),
    }
    *log.swap.lock().unwrap() = None;
    let info = store.snapshot().unwrap();
    let state = snapshot::read(&StdStorage, &info.path).unwrap();
    assert_eq!(state.history("a").unwrap().len(), 2);
}

/// A history section larger than the 1 MiB chunk its checksum is streamed through (one task
/// whose progress messages fill about 1.6 MB, 1.2 MB compressed) reads back from its file. Kills `at += n` →
/// `*=` in `check_section_streaming` (the checksum taken over the first chunk only: every
/// snapshot with more than 1 MiB of history refused as damaged).
#[test]
fn a_history_section_larger_than_one_checksum_chunk_reads_back() {
    let sim = SimStorage::new(1515);
    let store = sim_store(&sim);
    store.submit(NewTask::new("job").id("a")).unwrap();
    store.start("a").unwrap();
    // Random letters, so that the section stays larger than a chunk once compressed.
    let mut rng = fastrand::Rng::with_seed(1515);
    for i in 0..200u32 {
        let message: String = (0..8 << 10).map(|_| rng.alphanumeric()).collect();
        store
            .progress("a", (i / 2) as u8, None, Some(&format!("{i} {message}")))
            .unwrap();
    }
    let info = store.snapshot().unwrap();
    store.close().unwrap();
    let image = sim.file_bytes(&info.path).unwrap();
    let history_len = u64::from_le_bytes(image[40..48].try_into().unwrap());
    assert!(
        history_len > 1 << 20,
        "history section of {history_len} bytes"
    );
    let state = snapshot::read(&sim, &info.path).unwrap();
    assert_eq!(state.history("a").unwrap().len(), 202);
}

/// The simulated disk, except that a read of a snapshot file (`.snap`) returns at most
/// `read_bytes_max` bytes, as `pread` may, and nothing from `ends_at` to `resumes_at` (a file
/// cut while it is read: its length, asked first, is the whole file's, and so is its v3
/// history index past `resumes_at`, which an open reads before the tasks section).
#[derive(Debug)]
struct AwkwardReads {
    inner: SimStorage,
    read_bytes_max: usize,
    ends_at: u64,
    resumes_at: u64,
}

#[derive(Debug)]
struct AwkwardFile {
    inner: Box<dyn StorageFile>,
    read_bytes_max: usize,
    ends_at: u64,
    resumes_at: u64,
}

impl StorageFile for AwkwardFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if (self.ends_at..self.resumes_at).contains(&offset) {
            return Ok(0);
        }
        let left = usize::try_from(self.ends_at.saturating_sub(offset)).unwrap_or(usize::MAX);
        let left = if offset >= self.resumes_at {
            usize::MAX
        } else {
            left
        };
        let len = buf.len().min(self.read_bytes_max).min(left);
        self.inner.read_at(&mut buf[..len], offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn zeros_from(&self) -> io::Result<u64> {
        self.inner.zeros_from()
    }
}

impl Storage for AwkwardReads {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let file = self.inner.open(path, mode)?;
        if path.extension().is_some_and(|e| e == "snap") {
            Ok(Box::new(AwkwardFile {
                inner: file,
                read_bytes_max: self.read_bytes_max,
                ends_at: self.ends_at,
                resumes_at: self.resumes_at,
            }))
        } else {
            Ok(file)
        }
    }
    crate::storage_but_open_passes_to!(inner);
}

/// A v2 snapshot reads the same through reads of at most 1, 2, 3, 5, ... bytes as through
/// whole ones (the tasks section is decoded as it is read, so every record, option tag and
/// the closing keys are cut somewhere), and a file that ends inside its tasks section while it
/// is read (its length said otherwise) is `Corrupt` naming the offset where it ended. Kills a
/// record cut before its option tag taken for a damaged one (`Miss::Short` → `Miss::Bad` in
/// `Records::next_record`), the window's offsets after a short read (`Window::more`), and
/// → `-` / `*` in the offset the error names.
#[test]
fn a_v2_tasks_section_reads_through_short_reads_and_a_cut_is_named_where_it_ends() {
    let sim = SimStorage::new(1516);
    let store = sim_store(&sim);
    for id in ["a", "b", "c"] {
        store.submit(NewTask::new("job").id(id)).unwrap();
    }
    for i in 0..40 {
        let task = NewTask::new(format!("job {i} {}", "x".repeat(i * 7)))
            .id(format!("t{i:03}"))
            .role(["builder", "tester"][i % 2])
            .provider(format!("p{}", i % 3))
            .request_id(format!("request-{i}"));
        store.submit(task).unwrap();
        if i % 3 == 0 {
            store.start(&format!("t{i:03}")).unwrap();
        }
        if i % 6 == 0 {
            store.complete(&format!("t{i:03}"), None).unwrap();
        }
        if i % 9 == 1 {
            store.remove(&format!("t{i:03}"), Some("test")).unwrap();
        }
    }
    store.start("b").unwrap();
    let info = store.snapshot().unwrap();
    store.close().unwrap();
    let whole = snapshot::read(&sim, &info.path).unwrap();
    let tasks_len = {
        let image = sim.file_bytes(&info.path).unwrap();
        u64::from_le_bytes(image[32..40].try_into().unwrap())
    };
    assert!(tasks_len > 2000, "a tasks section of {tasks_len} bytes");

    for read_bytes_max in [1, 2, 3, 5, 8, 13, 61, 64, 255, 1000] {
        let short = AwkwardReads {
            inner: sim.clone(),
            read_bytes_max,
            ends_at: u64::MAX,
            resumes_at: u64::MAX,
        };
        let state = snapshot::read(&short, &info.path).unwrap();
        assert_eq!(
            snapshot::encode(&state).unwrap(),
            snapshot::encode(&whole).unwrap(),
            "read through reads of at most {read_bytes_max} bytes"
        );
    }

    let ends_at = 64 + tasks_len / 2;
    for read_bytes_max in [5, usize::MAX] {
        let cut = AwkwardReads {
            inner: sim.clone(),
            read_bytes_max,
            ends_at,
            resumes_at: 64 + tasks_len,
        };
        match snapshot::read(&cut, &info.path) {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!((file, offset), (info.path.clone(), Some(ends_at)));
            }
            other => panic!("a file ending at {ends_at} while read: {other:?}"),
        }
    }
}

/// `reseal_for_fuzzing` (what lets a fuzzer's damage reach the section decoders) also reseals
/// an image of exactly the 64-byte v2 header with empty sections: it then fails in the tasks
/// section (offset 64, no idempotency keys to read), not at the header checksum (60). Kills
/// `image.len() < HEADER_LEN` → `<=` in `v2::reseal`.
#[test]
fn resealing_a_header_only_v2_image_lets_it_reach_the_tasks_section() {
    let path = Path::new(PATH);
    let mut image = v2_image(V2Header::at(5), &[], &[]);
    assert_eq!(image.len(), 64);
    image[60..64].fill(0);
    assert_eq!(
        corrupt_offset("unsealed", snapshot::decode(path, &image)),
        60
    );
    snapshot::reseal_for_fuzzing(&mut image);
    assert_eq!(
        corrupt_offset("resealed", snapshot::decode(path, &image)),
        64
    );
}

/// A snapshot written through the file sink's bounded buffers keeps every byte in place when a
/// history longer than the 1 MiB append buffer goes straight to the file: taken twice (the
/// second copies the history from the first snapshot's file instead of filling it from the
/// log), with an idempotency key in the tasks section's tail, both read back the same history
/// and the key. Kills `appending.len() + bytes.len() > APPEND_BUFFER_BYTES` → `<` in
/// `FileSink::append` (the buffered tail of the tasks section left unwritten until after the
/// long history, then written over that history's last bytes).
#[test]
fn a_history_longer_than_the_write_buffer_survives_a_second_snapshot() {
    let sim = SimStorage::new(1517);
    let store = sim_store(&sim);
    store
        .submit(NewTask::new("job").id("a").request_id("req-a"))
        .unwrap();
    store.start("a").unwrap();
    // Random letters, so that the section stays larger than a chunk once compressed.
    let mut rng = fastrand::Rng::with_seed(1515);
    for i in 0..200u32 {
        let message: String = (0..8 << 10).map(|_| rng.alphanumeric()).collect();
        store
            .progress("a", (i / 2) as u8, None, Some(&format!("{i} {message}")))
            .unwrap();
    }
    let first = store.snapshot().unwrap();
    store.submit(NewTask::new("job").id("b")).unwrap();
    let second = store.snapshot().unwrap();
    store.close().unwrap();
    let events = |path: &Path| {
        let state =
            snapshot::read(&sim, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            state.request_ids.get("req-a").map(String::as_str),
            Some("a"),
            "{}",
            path.display()
        );
        format!("{:?}", state.history("a").unwrap().events().unwrap())
    };
    let from_log = events(&first.path);
    assert!(from_log.len() > 1 << 20);
    assert_eq!(
        events(&second.path),
        from_log,
        "the second snapshot's history"
    );
}
