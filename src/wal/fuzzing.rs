//! Entry points shared by the cargo-fuzz target (`fuzz/fuzz_targets/wal_decode.rs`) and the
//! corpus test (`tests/fuzz_wal_corpus.rs`). Not a stable API.

use std::path::Path;
use std::sync::Arc;

use super::frame;
use super::segment::{SEGMENT_HEADER_LEN, SegmentHeader, segment_path};
use super::sim::SimStorage;
use super::{Wal, WalOptions};
use crate::error::Result;

/// Feeds `data` to the frame decoder at every offset of its first bytes, then opens it as the
/// only segment of a log on a simulated disk (as is, and behind a valid header), replays it,
/// verifies it, and repairs it. Returns the number of records replayed from the first variant
/// that opened (as is, else behind the header). Must never panic, hang
/// or allocate more than a small multiple of `data.len()`.
#[doc(hidden)]
pub fn decode_segment_bytes(data: &[u8]) -> Result<u64> {
    for start in 0..data.len().min(64) {
        let _ = frame::decode(data.get(start..).unwrap_or_default());
    }
    let mut with_header = SegmentHeader {
        first_lsn: 1,
        prev_first_lsn: 0,
        segment_bytes_max: 1 << 20,
    }
    .encode()
    .to_vec();
    with_header.extend_from_slice(data);
    let raw = run_one(data);
    let framed = run_one(&with_header);
    debug_assert!(with_header.len() >= SEGMENT_HEADER_LEN);
    raw.or(framed)
}

fn run_one(file: &[u8]) -> Result<u64> {
    let dir = Path::new("/fuzz/wal");
    let sim = SimStorage::new(0);
    let storage: Arc<dyn super::Storage> = Arc::new(sim.clone());
    storage
        .create_dir_all(dir)
        .map_err(|e| crate::Error::io("mkdir", dir, e))?;
    sim.put_file(&segment_path(dir, 1), file.to_vec());
    let _ = super::verify::verify_with_storage(&sim, dir);
    let options = WalOptions {
        segment_bytes_max: 1 << 20,
        preallocate: false,
        ..WalOptions::default()
    };
    let read_only = WalOptions {
        read_only: true,
        ..options.clone()
    };
    if let Ok((wal, _)) = Wal::open_with_storage(storage.clone(), dir, read_only) {
        let _ = wal.replay(1, &mut |_, _| Ok(()));
    }
    let (wal, _) = Wal::open_with_storage(storage.clone(), dir, options)?;
    let mut n = 0u64;
    wal.replay(1, &mut |lsn, p| {
        n += 1;
        assert_eq!(lsn, n, "replay must deliver contiguous LSNs");
        let _ = p;
        Ok(())
    })?;
    wal.close()?;
    let _ = super::repair::repair_with_storage(&sim, dir, false);
    Ok(n)
}
