//! Arbitrary bytes as a frame and as the only segment of a log: Ok or Err, never a panic, a
//! hang or a huge allocation. The logic lives in the library so `tests/fuzz_wal_corpus.rs` runs
//! the same code over the committed corpus without cargo-fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tasklog::wal::fuzzing::decode_segment_bytes(data);
});
