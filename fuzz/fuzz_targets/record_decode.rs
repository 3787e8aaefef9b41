//! Arbitrary bytes as a store record and as an event payload: Ok or Err, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tasklog::store::fuzzing::decode_record_bytes(data);
});
