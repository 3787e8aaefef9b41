//! The 48-byte header at the start of every segment file.
//!
//! ```text
//! offset size field               meaning
//!  0     8    magic               b"TLOGWAL\0"
//!  8     4    version             format version (u32 LE), 1
//! 12     4    header_len          48 (u32 LE): records start here
//! 16     8    first_lsn           LSN of the first record in this segment (u64 LE)
//! 24     8    prev_first_lsn      first LSN of the segment before this one, 0 if none (u64 LE)
//! 32     8    segment_bytes_max   the size limit the writer used (u64 LE, informational)
//! 40     4    reserved            0
//! 44     4    header_crc          CRC-32 over bytes 0..44 (u32 LE)
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::wal::Lsn;

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TLOGWAL\0";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 48;
const _: () = assert!(SEGMENT_HEADER_LEN == 48);
/// The largest first LSN a segment may name (2^63 - 1): larger values are corruption.
pub const LSN_SANE_MAX: Lsn = u64::MAX / 2;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// LSN of the first record.
    pub first_lsn: Lsn,
    /// First LSN of the previous segment (0 if none): lets open detect a missing middle segment
    /// from headers alone.
    pub prev_first_lsn: Lsn,
    /// The writer's segment size limit.
    pub segment_bytes_max: u64,
}

impl SegmentHeader {
    /// The 48 header bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        let mut v: Vec<u8> = Vec::with_capacity(SEGMENT_HEADER_LEN);
        v.extend_from_slice(&SEGMENT_MAGIC); // magic
        v.extend_from_slice(&FORMAT_VERSION.to_le_bytes()); // version
        v.extend_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes()); // header_len
        v.extend_from_slice(&self.first_lsn.to_le_bytes()); // first_lsn
        v.extend_from_slice(&self.prev_first_lsn.to_le_bytes()); // prev_first_lsn
        v.extend_from_slice(&self.segment_bytes_max.to_le_bytes()); // segment_bytes_max
        v.extend_from_slice(&0u32.to_le_bytes()); // reserved
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes()); // header_crc
        out.copy_from_slice(&v);
        out
    }

    /// Decodes and checks a header: magic, version, length, CRC.
    pub fn decode(buf: &[u8], file: &Path) -> Result<SegmentHeader> {
        let bad =
            |reason: &str| Error::corrupt(file, Some(0), None, format!("segment header: {reason}"));
        let h = buf
            .get(..SEGMENT_HEADER_LEN)
            .ok_or_else(|| bad("file shorter than the header"))?;
        if h.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(bad("bad magic"));
        }
        let version = le_u32(h, 8);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                file: file.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if le_u32(h, 44) != crc32fast::hash(h.get(..44).unwrap_or_default()) {
            return Err(bad("header CRC mismatch"));
        }
        if le_u32(h, 12) as usize != SEGMENT_HEADER_LEN || le_u32(h, 40) != 0 {
            return Err(bad("bad header length or reserved field"));
        }
        let header = SegmentHeader {
            first_lsn: le_u64(h, 16),
            prev_first_lsn: le_u64(h, 24),
            segment_bytes_max: le_u64(h, 32),
        };
        if header.first_lsn == 0 || header.prev_first_lsn >= header.first_lsn {
            return Err(bad("impossible first LSN"));
        }
        // NOTE: a CRC only proves the header is what some writer wrote, not that it is sane.
        // LSNs count records, so no real log comes near 2^63; rejecting such values here keeps
        // every `lsn + 1` further on from overflowing.
        if header.first_lsn > LSN_SANE_MAX {
            return Err(bad("absurd first LSN"));
        }
        Ok(header)
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// `<dir>/<first_lsn as 20 digits>.seg`.
pub fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// The first LSN encoded in a segment file name, if the name is one.
pub fn parse_segment_name(path: &Path) -> Option<Lsn> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
