//! The store's fuzz targets (`fuzz/fuzz_targets/{snapshot_decode,record_decode,store_model}.rs`)
//! run in CI without cargo-fuzz: the same library functions over every file of their committed
//! corpora, then over seeded mutations of those files and random inputs. Decoders must return
//! Ok or Err, never panic; the model target panics only if the store and its model disagree.
//! `write_fuzz_seeds` (ignored) regenerates the seed files from the golden fixtures (snapshot
//! seeds of formats v1 and v2).

use std::path::{Path, PathBuf};

use tasklog::store::fuzzing::{decode_record_bytes, decode_snapshot_bytes, run_model_ops};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "seed corpus of {target} missing");
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn mutations(seeds: &[Vec<u8>], count: usize, seed: u64, mut check: impl FnMut(&[u8])) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for s in seeds {
        check(s);
    }
    for _ in 0..count {
        let mut data = seeds[rng.usize(0..seeds.len())].clone();
        match rng.u8(0..4) {
            0 if !data.is_empty() => {
                let i = rng.usize(0..data.len());
                data[i] ^= 1 << rng.u8(0..8);
            }
            1 if !data.is_empty() => data.truncate(rng.usize(0..data.len())),
            2 => {
                let at = rng.usize(0..=data.len());
                data.splice(at..at, (0..rng.usize(1..16)).map(|_| rng.u8(..)));
            }
            _ => data = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect(),
        }
        check(&data);
    }
}

#[test]
fn snapshot_decoder_never_panics() {
    let seeds = corpus("snapshot_decode");
    for version in [1u8, 2] {
        assert!(
            seeds
                .iter()
                .any(|s| s.get(8) == Some(&version) && decode_snapshot_bytes(s).is_ok()),
            "a valid v{version} snapshot seed must decode"
        );
    }
    mutations(&seeds, 3000, 1, |d| {
        let _ = decode_snapshot_bytes(d);
    });
}

#[test]
fn record_decoder_never_panics() {
    let seeds = corpus("record_decode");
    assert!(
        seeds.iter().any(|s| decode_record_bytes(s).is_err()),
        "seeds hold records, not bare events"
    );
    mutations(&seeds, 20_000, 2, |d| {
        let _ = decode_record_bytes(d);
    });
}

#[test]
fn store_model_agrees() {
    let seeds = corpus("store_model");
    mutations(&seeds, 150, 3, run_model_ops);
}

/// Regenerates the decoder seeds from the golden fixtures.
#[test]
#[ignore = "writes fuzz seeds"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let snaps = root.join("tests/fixtures/store-v1-snapshot/snapshots");
    for e in std::fs::read_dir(snaps).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let out = root.join("fuzz/corpus/snapshot_decode");
        std::fs::write(out.join("golden.snap"), &bytes).unwrap();
        std::fs::write(out.join("header_only.snap"), &bytes[..40]).unwrap();
    }
    let snaps = root.join("tests/fixtures/store-v2-snapshot/snapshots");
    let out = root.join("fuzz/corpus/snapshot_decode");
    for e in std::fs::read_dir(snaps).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let name = p.file_stem().unwrap().to_str().unwrap();
        std::fs::write(out.join(format!("golden_v2_{name}.snap")), &bytes).unwrap();
        std::fs::write(out.join("header_only_v2.snap"), &bytes[..64]).unwrap();
    }
    let snaps = root.join("tests/fixtures/store-v3-snapshot/snapshots");
    for e in std::fs::read_dir(snaps).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let name = p.file_stem().unwrap().to_str().unwrap();
        std::fs::write(out.join(format!("golden_v3_{name}.snap")), &bytes).unwrap();
    }
    let seg = root.join("tests/fixtures/store-v1-log/wal/00000000000000000001.seg");
    let wal = tasklog::wal::Wal::open(
        seg.parent().unwrap(),
        tasklog::wal::WalOptions::default().read_only(true),
    )
    .unwrap()
    .0;
    let out = root.join("fuzz/corpus/record_decode");
    for r in wal.read_from(1, 40).unwrap() {
        std::fs::write(out.join(format!("lsn-{:03}", r.lsn)), &r.payload).unwrap();
    }
}
