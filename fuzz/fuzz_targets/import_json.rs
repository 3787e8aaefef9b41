//! Arbitrary bytes as an import document: parsed and validated (and planned against an empty
//! store) to an Ok or an Err, never a panic, a hang or a huge allocation; an accepted one
//! imports, exports and re-imports, and imports the same through a validated copy. The logic lives in the
//! library (`tasklog::export::fuzz_import_json`) so `tests/export_fuzz_corpus.rs` runs the same
//! code over the committed corpus without cargo-fuzz.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tasklog::export::fuzz_import_json(data);
});
