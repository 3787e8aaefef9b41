//! Goal: the end-of-data rule in preallocated segments: zeros after the last complete record are
//! not a torn tail, a torn record inside preallocated space is cut, and garbage after zeros
//! followed by a valid frame is corruption. Method: real files with `preallocate: true`
//! (fallocate extends the file with zeros), damaged by hand, reopened.

mod common;

use tasklog::wal::{Storage, StorageFile, Wal, WalOptions};

fn opts() -> WalOptions {
    WalOptions::default().segment_bytes_max(1 << 20)
}

fn segment(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!("{:020}.seg", 1))
}

#[test]
fn zeros_after_the_last_record_are_end_of_data() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
    for i in 0..10u32 {
        wal.append(&i.to_le_bytes()).unwrap();
    }
    drop(wal);
    let len = std::fs::metadata(segment(dir.path())).unwrap().len();
    // Preallocation starts small and doubles as data arrives (issue 17: small volumes).
    assert!(
        len >= tasklog::wal::segment::writer::PREALLOCATE_BYTES_FIRST,
        "segment should be preallocated, is {len} bytes"
    );
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(
        (report.next_lsn, report.torn_bytes_cut, report.torn_at),
        (11, 0, None)
    );
    assert_eq!(wal.read_from(1, 100).unwrap().len(), 10);
}

#[test]
fn torn_record_inside_preallocated_space_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
    for i in 0..10u32 {
        wal.append(&[i as u8; 40]).unwrap();
    }
    drop(wal);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    // Zero the last 20 bytes of the last record: as if its last sector never reached the disk.
    for b in &mut bytes[end - 20..end] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).unwrap();
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(report.next_lsn, 10);
    assert_eq!(
        report.torn_at.as_ref().map(|t| t.1),
        Some((end - 64) as u64)
    );
    assert_eq!(wal.append(b"again").unwrap(), 10);
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!((report.next_lsn, report.torn_bytes_cut), (11, 0));
    assert_eq!(wal.read_from(10, 1).unwrap()[0].payload, b"again");
}

#[test]
fn garbage_in_zeros_followed_by_a_valid_frame_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts()).unwrap();
    for i in 0..10u32 {
        wal.append(&[i as u8; 40]).unwrap();
    }
    drop(wal);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    // Zero record 5 entirely: zeros followed by valid records is not the end of data.
    let start = 48 + 4 * 64;
    for b in &mut bytes[start..start + 64] {
        *b = 0;
    }
    std::fs::write(&path, &bytes).unwrap();
    match Wal::open(dir.path(), opts()) {
        Err(tasklog::Error::Corrupt {
            file, offset, lsn, ..
        }) => {
            assert_eq!((file, offset, lsn), (path, Some(start as u64), Some(5)));
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

/// Counts how often the log asks a segment for its length.
#[derive(Debug, Clone)]
struct LenSpy {
    lens: std::sync::Arc<std::sync::atomic::AtomicU64>,
    std_storage: tasklog::wal::StdStorage,
}

#[derive(Debug)]
struct LenSpyFile {
    inner: Box<dyn tasklog::wal::StorageFile>,
    lens: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StorageFile for LenSpyFile {
    fn len(&self) -> std::io::Result<u64> {
        self.lens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.len()
    }
    storage_file_passes_to!(inner; read_at, write_all_at, sync_data, sync_all, set_len,
        allocate, preallocate, zeros_from, drop_cache, map_all, read_all, read_prefix);
}

impl Storage for LenSpy {
    fn open(
        &self,
        p: &std::path::Path,
        m: tasklog::wal::OpenMode,
    ) -> std::io::Result<Box<dyn tasklog::wal::StorageFile>> {
        Ok(Box::new(LenSpyFile {
            inner: self.std_storage.open(p, m)?,
            lens: self.lens.clone(),
        }))
    }
    storage_but_open_passes_to!(std_storage);
}

/// Goal: a durable append inside preallocated space is a write and an fdatasync, nothing more.
/// A `statx` for the preallocation check before every write cost a single durable writer about
/// a third of its rate (docs/benchmarks.md, "W1: one stat per append"). Method: count the log's
/// length queries through the storage seam while appending durably: none while the records fit
/// in the space the first write reserved, and a few (one per doubling) past it.
#[test]
fn a_durable_append_inside_preallocated_space_asks_nothing_of_the_file() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let spy = LenSpy {
        lens: Default::default(),
        std_storage: tasklog::wal::StdStorage,
    };
    let (wal, _) =
        Wal::open_with_storage(std::sync::Arc::new(spy.clone()), dir.path(), opts()).unwrap();
    // The first write reserves the first 256 KiB (a new segment holds only its header).
    wal.append(&[7u8; 100]).unwrap();
    let before = spy.lens.load(Ordering::Relaxed);
    // 1,000 more records of 100 bytes: about 124 KiB, inside the first 256 KiB.
    for _ in 0..1000 {
        wal.append(&[7u8; 100]).unwrap();
    }
    assert_eq!(
        spy.lens.load(Ordering::Relaxed) - before,
        0,
        "length queries while appending inside the preallocated space"
    );
    // Past it (about 620 KiB more, up to the 1 MiB segment): the space doubles twice, each
    // doubling one look at the file, not one per append.
    for _ in 0..4999 {
        wal.append(&[7u8; 100]).unwrap();
    }
    let past = spy.lens.load(Ordering::Relaxed) - before;
    assert!(
        (1..=8).contains(&past),
        "{past} length queries for 4,999 appends past the first reservation"
    );
    drop(wal);
    let (wal, report) = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(report.next_lsn, 6001);
    assert_eq!(wal.read_from(1, 10_000).unwrap().len(), 6000);
}
