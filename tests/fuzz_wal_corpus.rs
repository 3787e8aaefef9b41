//! Goal: the fuzz target's logic (`tasklog::wal::fuzzing::decode_segment_bytes`) never panics,
//! hangs or over-allocates, without needing cargo-fuzz in CI. Method: run it over every file of
//! the committed seed corpus `fuzz/corpus/wal_decode/` (checking the expected outcome of the
//! well-understood seeds), then over a few thousand seeded mutations of those files and random
//! inputs.

use std::path::Path;

use tasklog::wal::fuzzing::decode_segment_bytes;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wal_decode");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "seed corpus missing");
    files
}

#[test]
fn seed_corpus_gives_the_expected_outcomes() {
    for (name, data) in corpus() {
        let got = decode_segment_bytes(&data);
        let want: Option<u64> = match name.as_str() {
            "valid_segment" => Some(8),
            "valid_batch" => Some(4),
            "torn_tail" => Some(4),
            "torn_batch" | "header_only" | "empty" => Some(0),
            "zero_filled" => Some(3),
            "frames_only" => Some(6),
            _ => None,
        };
        if let Some(n) = want {
            assert_eq!(got.as_ref().ok(), Some(&n), "{name}: {got:?}");
        }
        if name == "flipped_mid_followed_by_valid" || name == "wrong_lsn" {
            assert!(got.is_err(), "{name} must be corruption");
        }
    }
}

#[test]
fn mutated_and_random_inputs_never_panic() {
    let seeds = corpus();
    let mut rng = fastrand::Rng::with_seed(0x07a5_c109);
    let mut runs = 0;
    for (_, data) in &seeds {
        for _ in 0..250 {
            let mut m = data.clone();
            match rng.u8(..4) {
                0 if !m.is_empty() => {
                    let i = rng.usize(..m.len());
                    m[i] ^= 1 << rng.u8(..8);
                }
                1 if !m.is_empty() => m.truncate(rng.usize(..m.len())),
                2 => {
                    let at = rng.usize(..=m.len());
                    let junk: Vec<u8> = (0..rng.usize(1..32)).map(|_| rng.u8(..)).collect();
                    m.splice(at..at, junk);
                }
                _ => {
                    for _ in 0..rng.usize(1..8) {
                        if let Some(i) = (!m.is_empty()).then(|| rng.usize(..m.len())) {
                            m[i] = rng.u8(..);
                        }
                    }
                }
            }
            let _ = decode_segment_bytes(&m);
            runs += 1;
        }
    }
    for _ in 0..500 {
        let len = rng.usize(..512);
        let data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let _ = decode_segment_bytes(&data);
        runs += 1;
    }
    assert!(runs > 3000);
}
