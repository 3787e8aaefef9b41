//! Goal: the import fuzz target's logic (`tasklog::export::fuzz_import_json`) never panics,
//! hangs or over-allocates, without needing cargo-fuzz in CI.
//!
//! Method: run it over every file of the committed seed corpus `fuzz/corpus/import_json/`
//! (checking the outcome of the well-understood seeds: good fixtures accepted, `bad_*` ones
//! rejected), then over a few thousand seeded mutations of those files (byte flips, cuts,
//! splices, inserted JSON tokens) and random JSON-ish token soups.

use std::path::Path;

use tasklog::export::fuzz_import_json;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/import_json");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("the seed corpus should exist")
        .map(|e| {
            let p = e.expect("should read the entry").path();
            let name = p
                .file_name()
                .expect("should have a name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("should read the seed"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "seed corpus missing");
    files
}

#[test]
fn seed_corpus_gives_the_expected_outcomes() {
    for (name, data) in corpus() {
        let accepted = fuzz_import_json(&data);
        let want = match name.as_str() {
            n if n.starts_with("bad_") => Some(false),
            "empty" | "huge_number_time.json" => Some(false),
            "aliases.json"
            | "array.json"
            | "legacy_map.json"
            | "wrapped_v1.json"
            | "tasklog_v1.json"
            | "tasklog_empty_history.json"
            | "negative_zero.json" => Some(true),
            _ => None,
        };
        if let Some(want) = want {
            assert_eq!(accepted, want, "{name}");
        }
    }
}

const TOKENS: [&[u8]; 24] = [
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"0.5",
    b"\"status\"",
    b"\"state\"",
    b"\"title\"",
    b"\"tasks\"",
    b"\"history\"",
    b"\"lsn\"",
    b"\"kind\"",
    b"\"created\"",
    b"\"DONE\"",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"18446744073709551616",
];

fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=data.len());
        match rng.u8(..5) {
            0 if !data.is_empty() => {
                let i = rng.usize(..data.len());
                data[i] ^= 1 << rng.u8(..8);
            }
            1 => data.truncate(at),
            2 => {
                let token = TOKENS[rng.usize(..TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            3 if !data.is_empty() => {
                let from = rng.usize(..data.len());
                let to = rng.usize(from..=data.len().min(from + 64));
                let piece = data[from..to].to_vec();
                data.splice(at..at, piece);
            }
            _ => {
                let end = rng.usize(at..=data.len().min(at + 8));
                data.drain(at..end);
            }
        }
    }
    data
}

#[test]
fn mutated_and_random_inputs_never_panic() {
    let seeds = corpus();
    let mut rng = fastrand::Rng::with_seed(0x7A5C_106E);
    for _ in 0..3_000 {
        let (_, seed) = &seeds[rng.usize(..seeds.len())];
        let data = mutate(&mut rng, seed);
        let _ = fuzz_import_json(&data);
    }
    for _ in 0..1_000 {
        let mut data = Vec::new();
        for _ in 0..rng.usize(0..40) {
            data.extend_from_slice(TOKENS[rng.usize(..TOKENS.len())]);
        }
        let _ = fuzz_import_json(&data);
        let random: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
        let _ = fuzz_import_json(&random);
    }
}
