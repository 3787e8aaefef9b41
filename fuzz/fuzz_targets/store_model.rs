//! Operations, power cuts, reboots and byte flips against an in-memory model of the store
//! (two bytes per operation). Panics only when the store and the model disagree.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tasklog::store::fuzzing::run_model_ops(data);
});
