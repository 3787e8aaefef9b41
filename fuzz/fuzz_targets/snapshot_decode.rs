//! Arbitrary bytes as a snapshot file: Ok or Err, never a panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tasklog::store::fuzzing::decode_snapshot_bytes(data);
});
