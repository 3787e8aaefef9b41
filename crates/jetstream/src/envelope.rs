//! The message that carries one batch of records (docs/format.md, "JetStream log"):
//!
//! ```text
//! offset  size  field
//! 0       4     magic  b"TLJS"
//! 4       2     version (u16, 1)
//! 6       2     flags (u16, 0; any other value is refused)
//! 8       8     first LSN (u64)
//! 16      4     record count (u32, at least 1)
//! 20      ...   each record: length (u32) then that many bytes
//! end-4   4     CRC-32 (IEEE, crc32fast: the core's frame checksum) of every byte before it
//! ```
//!
//! All integers little-endian. One message per batch makes a batch atomic for free: JetStream
//! stores a message whole or not at all.

use std::path::PathBuf;

use tasklog::wal::Lsn;
use tasklog::{Error, Result};

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"TLJS";
/// The envelope version this build writes and reads.
pub const VERSION: u16 = 1;
/// Magic, version, flags, first LSN, count.
pub const HEADER_LEN: usize = 4 + 2 + 2 + 8 + 4;
/// The CRC after the records.
pub const TRAILER_LEN: usize = 4;
/// Each record's length prefix.
pub const RECORD_PREFIX_LEN: usize = 4;

const _: () = assert!(HEADER_LEN == 20);

/// The bytes an envelope of these records takes.
pub fn encoded_len(payloads: &[&[u8]]) -> u64 {
    let records: u64 = payloads
        .iter()
        .map(|p| (RECORD_PREFIX_LEN + p.len()) as u64)
        .sum();
    (HEADER_LEN + TRAILER_LEN) as u64 + records
}

/// Encodes one batch. The caller has checked the size against the server's limit, which is
/// far below `u32::MAX`, so every length fits its `u32` field.
pub fn encode(first_lsn: Lsn, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(encoded_len(payloads)).unwrap_or(0));
    out.extend_from_slice(&MAGIC); // magic
    out.extend_from_slice(&VERSION.to_le_bytes()); // version
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&first_lsn.to_le_bytes()); // first LSN
    out.extend_from_slice(&len_u32(payloads.len()).to_le_bytes()); // record count
    for p in payloads {
        out.extend_from_slice(&len_u32(p.len()).to_le_bytes()); // record length
        out.extend_from_slice(p); // record bytes
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes()); // CRC-32 of all the above
    out
}

fn len_u32(n: usize) -> u32 {
    // NOTE: sizes are checked against max_payload (at most 64 MiB) before encoding.
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A decoded batch: its first LSN and its records (borrowed from the message).
#[derive(Debug)]
pub struct Batch<'a> {
    pub first_lsn: Lsn,
    pub records: Vec<&'a [u8]>,
}

impl Batch<'_> {
    /// The LSN of the batch's last record.
    pub fn last_lsn(&self) -> Lsn {
        self.first_lsn + self.records.len() as u64 - 1
    }
}

/// Decodes and checks one message; `at` names it in errors (stream and sequence).
pub fn decode<'a>(bytes: &'a [u8], at: &dyn Fn() -> PathBuf) -> Result<Batch<'a>> {
    let bad =
        |offset: usize, reason: String| Error::corrupt(at(), Some(offset as u64), None, reason);
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(bad(
            0,
            format!(
                "message of {} bytes is shorter than an envelope ({} bytes)",
                bytes.len(),
                HEADER_LEN + TRAILER_LEN
            ),
        ));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if body.get(..4) != Some(&MAGIC[..]) {
        return Err(bad(
            0,
            "not a tasklog batch (bad magic; another writer's message?)".into(),
        ));
    }
    let version = u16::from_le_bytes(array(body, 4)?);
    if version != VERSION {
        return Err(Error::UnsupportedVersion {
            file: at(),
            found: u32::from(version),
            supported: u32::from(VERSION),
        });
    }
    let stored = u32::from_le_bytes(array(trailer, 0)?);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(bad(
            body.len(),
            format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let flags = u16::from_le_bytes(array(body, 6)?);
    if flags != 0 {
        return Err(bad(6, format!("unknown flags {flags:#06x}")));
    }
    let first_lsn = u64::from_le_bytes(array(body, 8)?);
    let count = u32::from_le_bytes(array(body, 16)?) as usize;
    // Each record takes at least its prefix: checked before allocating the list.
    if count == 0 || count > (body.len() - HEADER_LEN) / RECORD_PREFIX_LEN {
        return Err(bad(16, format!("impossible record count {count}")));
    }
    if first_lsn == 0 {
        return Err(bad(8, "first LSN 0 (LSNs start at 1)".into()));
    }
    let mut records = Vec::with_capacity(count);
    let mut pos = HEADER_LEN;
    for i in 0..count {
        let len = u32::from_le_bytes(array(body, pos)?) as usize;
        let start = pos + RECORD_PREFIX_LEN;
        let Some(record) = start.checked_add(len).and_then(|end| body.get(start..end)) else {
            return Err(bad(
                pos,
                format!("record {i} claims {len} bytes, past the end of the message"),
            ));
        };
        records.push(record);
        pos = start + len;
    }
    if pos != body.len() {
        return Err(bad(
            pos,
            format!("{} stray bytes after the last record", body.len() - pos),
        ));
    }
    Ok(Batch { first_lsn, records })
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N]> {
    bytes
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| {
            Error::corrupt(
                "jetstream message",
                Some(at as u64),
                None,
                "truncated field",
            )
        })
}

#[cfg(test)]
#[expect(
    clippy::indexing_slicing,
    reason = "tests index fixed, known-length buffers"
)]
mod tests {
    use super::*;

    fn here() -> PathBuf {
        PathBuf::from("test")
    }

    #[test]
    fn round_trip_and_golden_bytes() {
        let bytes = encode(7, &[b"ab", b""]);
        let mut golden = Vec::new();
        golden.extend_from_slice(b"TLJS\x01\x00\x00\x00");
        golden.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        golden.extend_from_slice(&[2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        let crc = crc32fast::hash(&golden);
        golden.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, golden);
        assert_eq!(encoded_len(&[b"ab", b""]), bytes.len() as u64);
        let batch = decode(&bytes, &here).expect("should decode");
        assert_eq!(batch.first_lsn, 7);
        assert_eq!(batch.records, vec![&b"ab"[..], &b""[..]]);
        assert_eq!(batch.last_lsn(), 8);
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let bytes = encode(3, &[b"hello", b"world"]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b, &here).is_err(), "flip at {i} accepted");
        }
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], &here).is_err(), "cut at {n} accepted");
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut b = encode(1, &[b"x"]);
        b[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let body_len = b.len() - TRAILER_LEN;
        let crc = crc32fast::hash(&b[..body_len]);
        b[body_len..].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&b, &here).expect_err("should refuse");
        assert!(err.to_string().contains("impossible record count"), "{err}");
    }
}
