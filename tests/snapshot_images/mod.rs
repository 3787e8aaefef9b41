//! Snapshot images taken apart and put back together by tests (docs/format.md): the
//! uncompressed histories of a v3 file, a v3 file with other histories, the same state as a v2
//! file. Everything put back is resealed, so that a damage placed on purpose is read past the
//! checksums.
#![allow(dead_code)]

/// Bytes of the v2 and v3 header.
pub const HEADER_LEN: usize = 64;
/// Bytes of a v3 history section's own header (raw length, block bytes, codec).
pub const SECTION_HEADER_LEN: usize = 16;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The format version of an image.
pub fn version(image: &[u8]) -> u32 {
    u32_at(image, 8)
}

/// Where the history section starts in a v2 or v3 image.
pub fn history_start(image: &[u8]) -> usize {
    HEADER_LEN + u64_at(image, 32) as usize
}

/// A v3 image's history section: its block size and where each block is stored (from the
/// section's start), with the uncompressed range it holds.
pub struct Section {
    pub raw_len: usize,
    pub block_bytes: usize,
    /// `(stored start, stored end, raw start, raw end)`, stored offsets from the section's start.
    pub blocks: Vec<(usize, usize, usize, usize)>,
}

/// Reads the header and index of a v3 image's history section.
pub fn section(image: &[u8]) -> Section {
    assert_eq!(version(image), 3, "a v3 image");
    let s = &image[history_start(image)..];
    let raw_len = u64_at(s, 0) as usize;
    let block_bytes = u32_at(s, 8) as usize;
    assert_eq!(u32_at(s, 12), 1, "LZ4");
    let count = raw_len.div_ceil(block_bytes);
    let first = SECTION_HEADER_LEN + 8 * count;
    let mut blocks = Vec::new();
    let mut stored = 0;
    for i in 0..count {
        let end = u64_at(s, SECTION_HEADER_LEN + 8 * i) as usize;
        let raw_start = i * block_bytes;
        blocks.push((
            first + stored,
            first + end,
            raw_start,
            (raw_start + block_bytes).min(raw_len),
        ));
        stored = end;
    }
    Section {
        raw_len,
        block_bytes,
        blocks,
    }
}

/// The histories of a v3 image, uncompressed (the v2 history section of the same state).
pub fn histories(image: &[u8]) -> Vec<u8> {
    let section_at = history_start(image);
    let Section {
        raw_len, blocks, ..
    } = section(image);
    let mut out = Vec::with_capacity(raw_len);
    for (from, to, raw_start, raw_end) in blocks {
        let stored = &image[section_at + from..section_at + to];
        let len = raw_end - raw_start;
        if stored.len() == len {
            out.extend_from_slice(stored);
        } else {
            let mut raw = vec![0u8; len];
            let n = lz4_flex::block::decompress_into(stored, &mut raw).unwrap();
            assert_eq!(n, len);
            out.extend_from_slice(&raw);
        }
    }
    out
}

/// `image` (v3) with `histories` as its uncompressed histories, every block stored as it is
/// (which the format allows), resealed.
pub fn with_histories(image: &[u8], histories: &[u8]) -> Vec<u8> {
    let block_bytes = section(image).block_bytes;
    let count = histories.len().div_ceil(block_bytes);
    let mut out = image[..history_start(image)].to_vec();
    let section_at = out.len();
    out.extend_from_slice(&(histories.len() as u64).to_le_bytes());
    out.extend_from_slice(&(block_bytes as u32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..count {
        let end = ((i + 1) * block_bytes).min(histories.len());
        out.extend_from_slice(&(end as u64).to_le_bytes());
    }
    out.extend_from_slice(histories);
    let stored = (out.len() - section_at) as u64;
    out[40..48].copy_from_slice(&stored.to_le_bytes());
    tasklog::store::snapshot::reseal_for_fuzzing(&mut out);
    out
}

/// The same state as a v2 image: the tasks section as it is, the histories uncompressed.
pub fn to_v2(image: &[u8]) -> Vec<u8> {
    let histories = histories(image);
    let mut out = image[..history_start(image)].to_vec();
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    out[40..48].copy_from_slice(&(histories.len() as u64).to_le_bytes());
    out.extend_from_slice(&histories);
    tasklog::store::snapshot::reseal_for_fuzzing(&mut out);
    out
}
