//! The history section of a v3 snapshot: v2's histories, byte for byte, cut into blocks that
//! each decompress alone (LZ4 block format), so that reading one history reads and
//! decompresses one block (two when it straddles a boundary) and an open reads only the index.
//! Layout (docs/format.md, "History section v3"; integers little-endian):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8 | `raw_len`: bytes of the histories, uncompressed |
//! | 8  | 4 | `block_bytes`: uncompressed bytes of every block but the last |
//! | 12 | 4 | `codec`: 1, the LZ4 block format |
//! | 16 | 8 per block | index: where each block's stored bytes end, counted from block 0's start |
//! | 16 + 8 × blocks | | the blocks, back to back |
//!
//! There are `ceil(raw_len / block_bytes)` blocks. A block whose stored length equals its
//! uncompressed length is stored as it is: the writer keeps a block as it is unless LZ4 makes
//! it shorter, so a stored block is never longer than its bytes.
//!
//! NOTE: why LZ4 in 64 KiB blocks (docs/benchmarks.md, "The history section compressed"): on
//! the W3 benchmark's snapshot the history section shrinks 4x, a history read stays one
//! `pread` of about 16 KiB and a decompression of 64 KiB (tens of microseconds), and a pure
//! Rust codec builds on every target `.ci/run` checks without a C compiler.

use std::borrow::Cow;
use std::path::Path;

use super::v2::Sink;
use crate::error::{Error, Result};
use crate::store::snapshot::SNAPSHOT_BYTES_MAX;

/// Bytes of the section header before the index.
pub const SECTION_HEADER_LEN: usize = 16;
/// Uncompressed bytes per block this build writes.
pub const BLOCK_BYTES: u32 = 64 << 10;
/// The codec number of the LZ4 block format (the only one).
pub const CODEC_LZ4: u32 = 1;
/// Block sizes a reader accepts: the decompression buffer of one block is allocated at this
/// size, so a file cannot make a read allocate more.
const BLOCK_BYTES_MIN: u32 = 1 << 10;
const BLOCK_BYTES_MAX: u32 = 16 << 20;
/// Bytes of one index entry.
const INDEX_ENTRY_LEN: u64 = 8;

/// The index of a v3 history section: where each block is stored and what it holds.
#[derive(Debug)]
pub struct Blocks {
    raw_len: u64,
    block_bytes: u32,
    /// Where block 0 starts, from the section's start.
    first_at: u64,
    /// Where each block's stored bytes end, from block 0's start.
    ends: Box<[u64]>,
}

impl Blocks {
    /// The bytes of a section header for `raw_len` bytes of histories in this build's blocks.
    pub fn section_header(raw_len: u64) -> [u8; SECTION_HEADER_LEN] {
        let mut h = [0u8; SECTION_HEADER_LEN];
        h[..8].copy_from_slice(&raw_len.to_le_bytes());
        h[8..12].copy_from_slice(&BLOCK_BYTES.to_le_bytes());
        h[12..].copy_from_slice(&CODEC_LZ4.to_le_bytes());
        h
    }

    /// Blocks of `raw_len` bytes in blocks of `block_bytes`.
    fn count(raw_len: u64, block_bytes: u32) -> u64 {
        raw_len.div_ceil(u64::from(block_bytes))
    }

    /// Bytes of the section header and index for `raw_len` bytes in this build's blocks:
    /// where the writer puts block 0.
    pub fn first_block_at(raw_len: u64) -> u64 {
        SECTION_HEADER_LEN as u64 + INDEX_ENTRY_LEN * Self::count(raw_len, BLOCK_BYTES)
    }

    /// Reads and checks the header and index of a `stored_len`-byte section that starts at
    /// byte `section_at` of the snapshot at `path`; `read(offset, buf)` fills `buf` from that
    /// offset of the section. Every count is checked against `stored_len` before anything is
    /// allocated.
    pub fn read_index(
        path: &Path,
        section_at: u64,
        stored_len: u64,
        read: &mut dyn FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<Blocks> {
        let corrupt =
            |at: u64, reason: String| Error::corrupt(path, Some(section_at + at), None, reason);
        if stored_len < SECTION_HEADER_LEN as u64 {
            return Err(corrupt(
                0,
                format!("a {stored_len}-byte history section is shorter than its header"),
            ));
        }
        let mut header = [0u8; SECTION_HEADER_LEN];
        read(0, &mut header)?;
        let raw_len = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
        let block_bytes = u32::from_le_bytes(header[8..12].try_into().unwrap_or_default());
        let codec = u32::from_le_bytes(header[12..].try_into().unwrap_or_default());
        if codec != CODEC_LZ4 {
            return Err(corrupt(12, format!("unknown history codec {codec}")));
        }
        if !(BLOCK_BYTES_MIN..=BLOCK_BYTES_MAX).contains(&block_bytes) {
            return Err(corrupt(
                8,
                format!(
                    "history blocks of {block_bytes} bytes (a reader takes \
                     {BLOCK_BYTES_MIN} to {BLOCK_BYTES_MAX})"
                ),
            ));
        }
        if raw_len > SNAPSHOT_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "snapshot history section, uncompressed",
                len: raw_len,
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let count = Self::count(raw_len, block_bytes);
        // Every block takes at least one stored byte besides its index entry.
        let first_at = SECTION_HEADER_LEN as u64 + INDEX_ENTRY_LEN * count;
        if first_at + count > stored_len {
            return Err(corrupt(
                0,
                format!(
                    "{count} history blocks ({raw_len} bytes in blocks of {block_bytes}) \
                     cannot fit in {stored_len} bytes"
                ),
            ));
        }
        let mut index = vec![0u8; (INDEX_ENTRY_LEN * count) as usize];
        read(SECTION_HEADER_LEN as u64, &mut index)?;
        let ends: Box<[u64]> = index
            .chunks_exact(INDEX_ENTRY_LEN as usize)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap_or_default()))
            .collect();
        let blocks = Blocks {
            raw_len,
            block_bytes,
            first_at,
            ends,
        };
        for i in 0..blocks.ends.len() {
            let (start, end) = blocks.stored_range(i);
            let raw = blocks.raw_range(i);
            if end <= start || end - start > (raw.end - raw.start) as u64 {
                return Err(corrupt(
                    SECTION_HEADER_LEN as u64 + INDEX_ENTRY_LEN * i as u64,
                    format!(
                        "history block {i} is stored in bytes {start}..{end} of the section, \
                         not 1 to {} bytes after the block before",
                        raw.end - raw.start
                    ),
                ));
            }
        }
        let blocks_end = blocks
            .first_at
            .saturating_add(blocks.ends.last().copied().unwrap_or(0));
        if blocks_end != stored_len {
            return Err(corrupt(
                0,
                format!("the history blocks end at {blocks_end}, the section at {stored_len}"),
            ));
        }
        Ok(blocks)
    }

    /// Bytes of the histories, uncompressed.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// The block that holds uncompressed byte `at`.
    pub fn block_of(&self, at: usize) -> usize {
        at / self.block_bytes as usize
    }

    /// The uncompressed bytes block `i` holds.
    pub fn raw_range(&self, i: usize) -> std::ops::Range<usize> {
        let bytes = self.block_bytes as usize;
        let start = i.saturating_mul(bytes);
        start..start.saturating_add(bytes).min(self.raw_len as usize)
    }

    /// Where block `i` is stored, from the section's start (`read_index` checked every one).
    /// NOTE: saturating, because `read_index` calls it on entries not yet checked: an entry
    /// near `u64::MAX` (a damaged index) must give a range the checks refuse, not an overflow
    /// (found by the `snapshot_decode` fuzz target).
    pub fn stored_range(&self, i: usize) -> (u64, u64) {
        let start = match i.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        (
            self.first_at.saturating_add(start),
            self.first_at.saturating_add(end),
        )
    }

    /// The uncompressed bytes of block `i`, from its `stored` bytes. A block that does not
    /// decompress to exactly its length is `Corrupt` at its place in the file (`section_at`:
    /// where the section starts): the section's CRC passed, so only a wrong writer gets here.
    pub fn decompress(
        &self,
        path: &Path,
        section_at: u64,
        i: usize,
        stored: Cow<'_, [u8]>,
    ) -> Result<Vec<u8>> {
        let raw = self.raw_range(i);
        let len = raw.end - raw.start;
        if stored.len() == len {
            return Ok(stored.into_owned());
        }
        let mut out = vec![0u8; len];
        let at = section_at + self.stored_range(i).0;
        match lz4_flex::block::decompress_into(&stored, &mut out) {
            Ok(n) if n == len => Ok(out),
            Ok(n) => Err(Error::corrupt(
                path,
                Some(at),
                None,
                format!("history block {i} decompresses to {n} bytes, not {len}"),
            )),
            Err(e) => Err(Error::corrupt(
                path,
                Some(at),
                None,
                format!("history block {i} does not decompress: {e}"),
            )),
        }
    }
}

/// Compresses the histories an image holds uncompressed after the section header and a zeroed
/// index (`section_start`: where that header is in the image), in place: each block is read,
/// compressed and written where the blocks before it ended, which is never past bytes not read
/// yet (a stored block is never longer than its bytes); then the index is written and the
/// image cut after the last block. Returns the section's stored length.
pub fn compress_in_place(sink: &mut dyn Sink, section_start: u64, raw_len: u64) -> Result<u64> {
    let first_at = section_start + Blocks::first_block_at(raw_len);
    debug_assert_eq!(sink.len(), first_at + raw_len);
    let count = Blocks::count(raw_len, BLOCK_BYTES);
    let mut raw_buf = vec![0u8; BLOCK_BYTES as usize];
    let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(BLOCK_BYTES as usize)];
    let mut index = Vec::with_capacity((INDEX_ENTRY_LEN * count) as usize);
    let mut stored = 0u64;
    for i in 0..count {
        let raw_at = i * u64::from(BLOCK_BYTES);
        let len = (raw_len - raw_at).min(u64::from(BLOCK_BYTES)) as usize;
        let raw = raw_buf.get_mut(..len).unwrap_or_default();
        sink.read_at(first_at + raw_at, raw)?;
        let compressed = lz4_flex::block::compress_into(raw, &mut out)
            .map_err(|e| super::codec(format!("compressing history block {i}: {e}")))?;
        let piece = match out.get(..compressed) {
            Some(piece) if compressed < len => piece,
            _ => raw,
        };
        sink.patch(first_at + stored, piece)?
            .ok_or_else(|| super::codec("a history block landed outside the image".into()))?;
        stored += piece.len() as u64;
        index.extend_from_slice(&stored.to_le_bytes());
    }
    sink.patch(section_start + SECTION_HEADER_LEN as u64, &index)?
        .ok_or_else(|| super::codec("the image lost its history index".into()))?;
    sink.truncate(first_at + stored)?;
    Ok(first_at + stored - section_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "x.snap";

    /// An image of `before` bytes, then a section of `raw` compressed in place.
    fn section_of(before: usize, raw: &[u8]) -> (Vec<u8>, u64) {
        let mut image = vec![7u8; before];
        let start = image.len() as u64;
        image.extend_from_slice(&Blocks::section_header(raw.len() as u64));
        image.resize(
            (start + Blocks::first_block_at(raw.len() as u64)) as usize,
            0,
        );
        image.extend_from_slice(raw);
        let stored = compress_in_place(&mut image, start, raw.len() as u64).unwrap();
        assert_eq!(image.len() as u64, start + stored);
        assert_eq!(
            &image[..before],
            &vec![7u8; before][..],
            "bytes before kept"
        );
        (image, start)
    }

    fn index_of(section: &[u8]) -> Result<Blocks> {
        Blocks::read_index(
            Path::new(PATH),
            1000,
            section.len() as u64,
            &mut |at, buf| {
                let at = at as usize;
                buf.copy_from_slice(&section[at..at + buf.len()]);
                Ok(())
            },
        )
    }

    fn read_back(blocks: &Blocks, section: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..blocks.ends.len() {
            let (from, to) = blocks.stored_range(i);
            let raw = blocks
                .decompress(
                    Path::new(PATH),
                    1000,
                    i,
                    section[from as usize..to as usize].into(),
                )
                .unwrap();
            assert_eq!(raw.len(), blocks.raw_range(i).len());
            out.extend_from_slice(&raw);
        }
        out
    }

    /// Histories of every length around a block's edges, compressible (stored compressed)
    /// and random (stored as they are), read back whole; compressible ones shrink.
    #[test]
    fn sections_compress_in_place_and_read_back() {
        let block = BLOCK_BYTES as usize;
        let mut rng = fastrand::Rng::with_seed(3);
        for len in [
            0,
            1,
            100,
            block - 1,
            block,
            block + 1,
            3 * block + block / 2,
        ] {
            let text: Vec<u8> = (0..len).map(|i| b"history entry "[i % 14]).collect();
            let noise: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            for (what, raw) in [("text", text), ("noise", noise)] {
                let (image, start) = section_of(33, &raw);
                let section = &image[start as usize..];
                let blocks = index_of(section).unwrap();
                assert_eq!(blocks.raw_len(), len as u64);
                assert_eq!(blocks.ends.len(), len.div_ceil(block));
                assert_eq!(read_back(&blocks, section), raw, "{what} of {len} bytes");
                let stored = section.len() - Blocks::first_block_at(len as u64) as usize;
                match what {
                    "text" if len > 100 => assert!(stored < len / 4, "{len}: {stored}"),
                    "noise" => assert_eq!(stored, len, "random bytes are stored as they are"),
                    _ => {}
                }
            }
        }
    }

    /// A block LZ4 compresses to exactly its own length is stored as it is (a reader takes a
    /// stored block of its length as uncompressed, so storing the LZ4 bytes would corrupt it).
    #[test]
    fn a_block_lz4_cannot_shorten_is_stored_as_it_is() {
        let mut rng = fastrand::Rng::with_seed(11);
        let noise: Vec<u8> = (0..4000).map(|_| rng.u8(..)).collect();
        // Random bytes, then zeros: from incompressible to compressible, one byte at a time,
        // so some length of the random part compresses to exactly the whole length.
        let raw = (0..noise.len())
            .map(|k| {
                let mut raw = noise.clone();
                raw[k..].fill(0);
                raw
            })
            .find(|raw| lz4_flex::block::compress(raw).len() == raw.len())
            .expect("some mix compresses to its own length");
        let (image, start) = section_of(0, &raw);
        let section = &image[start as usize..];
        let blocks = index_of(section).unwrap();
        assert_eq!(read_back(&blocks, section), raw);
    }

    fn corrupt_reason(result: Result<Blocks>) -> (Option<u64>, String) {
        match result {
            Err(Error::Corrupt { offset, reason, .. }) => (offset, reason),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// Every field of the header and the index is checked before it is trusted, and the
    /// error names where in the file.
    #[test]
    fn a_damaged_header_or_index_is_refused_naming_the_place() {
        let raw: Vec<u8> = (0..2 * BLOCK_BYTES + 10).map(|i| (i % 251) as u8).collect();
        let (image, start) = section_of(0, &raw);
        let good = image[start as usize..].to_vec();
        let set = |at: usize, bytes: &[u8]| {
            let mut s = good.clone();
            s[at..at + bytes.len()].copy_from_slice(bytes);
            s
        };
        assert!(index_of(&good).is_ok());
        let (at, why) = corrupt_reason(index_of(&good[..15]));
        assert_eq!(at, Some(1000));
        assert!(why.contains("shorter than its header"), "{why}");
        let (at, why) = corrupt_reason(index_of(&set(12, &2u32.to_le_bytes())));
        assert_eq!((at, why.contains("codec 2")), (Some(1012), true), "{why}");
        for bytes in [BLOCK_BYTES_MIN - 1, BLOCK_BYTES_MAX + 1] {
            let (at, why) = corrupt_reason(index_of(&set(8, &bytes.to_le_bytes())));
            assert_eq!(at, Some(1008), "{why}");
        }
        // A smaller block size than written: more blocks than the index holds.
        let (at, why) = corrupt_reason(index_of(&set(8, &BLOCK_BYTES_MIN.to_le_bytes())));
        assert_eq!(at, Some(1000), "{why}");
        assert!(why.contains("cannot fit"), "{why}");
        match index_of(&set(0, &(SNAPSHOT_BYTES_MAX + 1).to_le_bytes())) {
            Err(Error::TooLarge { len, .. }) => assert_eq!(len, SNAPSHOT_BYTES_MAX + 1),
            other => panic!("{other:?}"),
        }
        // Exactly at the limit is not too large (here it cannot fit, a plain corruption).
        let (_, why) = corrupt_reason(index_of(&set(0, &SNAPSHOT_BYTES_MAX.to_le_bytes())));
        assert!(why.contains("cannot fit"), "{why}");
        // One block, and the section ends after its index: no room for the block's bytes.
        let (one, one_start) = section_of(0, &raw[..100]);
        let one = &one[one_start as usize..];
        assert_eq!(Blocks::first_block_at(100), 24);
        let (at, why) = corrupt_reason(index_of(&one[..24]));
        assert_eq!(at, Some(1000));
        assert!(why.contains("1 history blocks"), "{why}");
        let end = |i: usize| u64::from_le_bytes(good[16 + 8 * i..24 + 8 * i].try_into().unwrap());
        // Block 1 empty (its end is block 0's), then longer than its bytes.
        let (at, why) = corrupt_reason(index_of(&set(24, &end(0).to_le_bytes())));
        assert_eq!(at, Some(1000 + 24), "{why}");
        let longer = end(0) + u64::from(BLOCK_BYTES) + 1;
        let (at, _) = corrupt_reason(index_of(&set(24, &longer.to_le_bytes())));
        assert_eq!(at, Some(1000 + 24));
        // An entry near the top of u64 (a fuzz input): refused at its entry, the range it
        // names saturated rather than overflowed (wrapped, it would end before it starts).
        let (at, why) = corrupt_reason(index_of(&set(16, &u64::MAX.to_le_bytes())));
        assert_eq!(at, Some(1000 + 16), "{why}");
        assert!(why.contains(&format!("..{}", u64::MAX)), "{why}");
        // Block 2 empty: named at its own index entry.
        let (at, _) = corrupt_reason(index_of(&set(32, &end(1).to_le_bytes())));
        assert_eq!(at, Some(1000 + 32));
        // The blocks end before the section does.
        let mut longer_section = good.clone();
        longer_section.push(0);
        let (_, why) = corrupt_reason(index_of(&longer_section));
        assert!(why.contains("the history blocks end at"), "{why}");
    }

    /// A block whose bytes do not decompress to exactly its length is corruption at its
    /// place in the file.
    #[test]
    fn a_block_that_decompresses_wrong_is_corruption_at_its_place() {
        let raw: Vec<u8> = (0..BLOCK_BYTES + 5000).map(|i| (i % 7) as u8).collect();
        let (image, start) = section_of(0, &raw);
        let section = &image[start as usize..];
        let blocks = index_of(section).unwrap();
        let (from, to) = blocks.stored_range(1);
        let stored = &section[from as usize..to as usize];
        // Block 1's bytes as block 0's: they decompress to 5,000 bytes, not 64 KiB; block 1's
        // cut short do not decompress.
        let (f0, _) = blocks.stored_range(0);
        for (i, bytes, at, want) in [
            (0, stored, f0, "decompresses to 5000 bytes, not 65536"),
            (1, &stored[..stored.len() - 1], from, "does not decompress"),
        ] {
            match blocks.decompress(Path::new(PATH), 1000, i, bytes.into()) {
                Err(Error::Corrupt { offset, reason, .. }) => {
                    assert_eq!(offset, Some(1000 + at));
                    assert!(reason.contains(want), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
