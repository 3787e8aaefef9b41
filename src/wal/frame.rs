//! The record frame: a self-checking envelope around one opaque payload.
//!
//! ```text
//! offset size field      meaning
//!  0     4    len        payload length in bytes (u32 LE)
//!  4     4    len_check  !len (bitwise NOT), so an all-zero header never decodes
//!  8     1    kind       1 = record (0 is never valid)
//!  9     1    flags      bit 0 = batch begin, bit 1 = batch end (a lone record has both)
//! 10     2    reserved   0
//! 12     8    lsn        log sequence number (u64 LE)
//! 20     4    crc        CRC-32 (crc32fast) over bytes 0..20 then the payload
//! 24     len  payload
//! ```
//! All integers are little-endian and written by hand, field by field.

use std::sync::OnceLock;

use crc32fast::Hasher;

use super::Lsn;

/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 24;
/// The largest payload a frame may carry. Checked on append and before trusting a length read
/// from disk.
pub const RECORD_BYTES_MAX: usize = 64 << 20;
/// The only frame kind in format version 1.
pub const KIND_RECORD: u8 = 1;
/// First record of an atomic batch (a lone record is a batch of one: both flags).
pub const FLAG_BATCH_BEGIN: u8 = 0b01;
/// Last record of an atomic batch.
pub const FLAG_BATCH_END: u8 = 0b10;
/// A lone record.
pub const FLAGS_SINGLE: u8 = FLAG_BATCH_BEGIN | FLAG_BATCH_END;
const FLAGS_KNOWN: u8 = FLAGS_SINGLE;
/// Bytes covered by the CRC before the payload.
const CRC_COVERED_HEADER_LEN: usize = 20;

const _: () = assert!(FRAME_HEADER_LEN == 24);
const _: () = assert!(CRC_COVERED_HEADER_LEN + 4 == FRAME_HEADER_LEN);
const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize);

/// Total bytes a frame with a payload of `payload_len` bytes takes on disk.
pub const fn encoded_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// One decoded frame, borrowing its payload from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// Frame kind (always [`KIND_RECORD`] in version 1).
    pub kind: u8,
    /// Batch flags.
    pub flags: u8,
    /// The payload.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// True if this frame opens a batch.
    pub fn begins_batch(&self) -> bool {
        self.flags & FLAG_BATCH_BEGIN != 0
    }
    /// True if this frame closes a batch.
    pub fn ends_batch(&self) -> bool {
        self.flags & FLAG_BATCH_END != 0
    }
}

/// Why bytes did not decode as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length and its check are both zero: the end-of-data marker (or unwritten space).
    Zero,
    /// Fewer bytes than the header says the frame needs: a write that did not finish.
    Incomplete,
    /// The bytes are not a valid frame.
    Bad(&'static str),
}

/// Appends the encoding of one frame to `out`.
///
/// The caller checked `payload.len() <= RECORD_BYTES_MAX`.
///
/// NOTE: the CRC covers bytes 0..20 and then the payload, which are not adjacent on disk (the
/// CRC sits between them). The 20 covered bytes are first put 4 bytes late, right in front of
/// the payload, so that one call hashes them together, and are then moved to their place.
/// crc32fast folds inputs of 128 bytes or more with PCLMULQDQ but hashes shorter ones with
/// tables and has a fixed cost per call, so a 20-byte header and a ~120-byte payload hashed
/// apart took 1.5 to 2 times as long as the two hashed together.
pub fn encode_into(out: &mut Vec<u8>, lsn: Lsn, flags: u8, payload: &[u8]) {
    debug_assert!(payload.len() <= RECORD_BYTES_MAX);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; FRAME_HEADER_LEN];
    put(&mut header, 0, &len.to_le_bytes()); // len
    put(&mut header, 4, &(!len).to_le_bytes()); // len_check
    put(&mut header, 8, &[KIND_RECORD]); // kind
    put(&mut header, 9, &[flags]); // flags
    put(&mut header, 10, &0u16.to_le_bytes()); // reserved
    put(&mut header, 12, &lsn.to_le_bytes()); // lsn
    let start = out.len();
    let mut staged = [0u8; FRAME_HEADER_LEN];
    put(
        &mut staged,
        FRAME_HEADER_LEN - CRC_COVERED_HEADER_LEN,
        header.get(..CRC_COVERED_HEADER_LEN).unwrap_or_default(),
    );
    out.extend_from_slice(&staged);
    out.extend_from_slice(payload);
    let covered = start + FRAME_HEADER_LEN - CRC_COVERED_HEADER_LEN;
    let mut hasher = new_hasher();
    hasher.update(out.get(covered..).unwrap_or_default());
    let crc = hasher.finalize();
    put(&mut header, CRC_COVERED_HEADER_LEN, &crc.to_le_bytes()); // crc
    if let Some(dst) = out.get_mut(start..start + FRAME_HEADER_LEN) {
        dst.copy_from_slice(&header);
    }
    debug_assert_eq!(
        decode(out.get(start..).unwrap_or_default()).map(|(f, n)| (f.lsn, f.flags, f.payload, n)),
        Ok((lsn, flags, payload, encoded_len(payload.len())))
    );
}

/// A fresh CRC state. Cloned from one made once: `Hasher::new` detects CPU features on every
/// call, a measurable cost at a few million frames a second.
fn new_hasher() -> Hasher {
    static PROTOTYPE: OnceLock<Hasher> = OnceLock::new();
    PROTOTYPE.get_or_init(Hasher::new).clone()
}

/// Copies `bytes` into `buf` at `at` (a fixed header layout: always in bounds).
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = buf.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// Reads the frame header at the start of `buf` and checks everything but the CRC.
/// Returns the payload length.
fn check_header(buf: &[u8]) -> Result<usize, DecodeError> {
    let head = buf.get(..8).ok_or_else(|| {
        if buf.iter().all(|&b| b == 0) {
            DecodeError::Zero
        } else {
            DecodeError::Incomplete
        }
    })?;
    let len = u32_at(head, 0);
    let len_check = u32_at(head, 4);
    if len == 0 && len_check == 0 {
        return Err(DecodeError::Zero);
    }
    if len_check != !len {
        return Err(DecodeError::Bad("length check mismatch"));
    }
    let len = len as usize;
    // NOTE: the limit is checked before anything trusts the length.
    if len > RECORD_BYTES_MAX {
        return Err(DecodeError::Bad("length over RECORD_BYTES_MAX"));
    }
    let header = buf.get(..FRAME_HEADER_LEN).ok_or(DecodeError::Incomplete)?;
    if header.get(8).copied() != Some(KIND_RECORD) {
        return Err(DecodeError::Bad("unknown frame kind"));
    }
    let flags = header.get(9).copied().unwrap_or(0);
    if flags & !FLAGS_KNOWN != 0 || header.get(10..12) != Some(&[0, 0][..]) {
        return Err(DecodeError::Bad("unknown flags"));
    }
    if buf.len() - FRAME_HEADER_LEN < len {
        return Err(DecodeError::Incomplete);
    }
    Ok(len)
}

/// Decodes the frame at the start of `buf`; returns it and the bytes it occupies.
/// Never panics and never allocates, whatever `buf` holds.
pub fn decode(buf: &[u8]) -> Result<(Frame<'_>, usize), DecodeError> {
    decode_inner(buf, None)
}

/// [`decode`] without the CRC, for a frame whose CRC another thread checked already (see
/// `segment::reader::Vouched`): the header is checked as `decode` checks it.
pub(crate) fn decode_vouched(buf: &[u8]) -> Result<(Frame<'_>, usize), DecodeError> {
    let len = check_header(buf)?;
    let end = FRAME_HEADER_LEN + len;
    let payload = buf
        .get(FRAME_HEADER_LEN..end)
        .ok_or(DecodeError::Incomplete)?;
    Ok((frame_at(buf, payload), end))
}

/// [`decode`] for walking many frames: checks small frames' CRCs through `scratch`.
pub fn decode_with<'a>(
    buf: &'a [u8],
    scratch: &mut Scratch,
) -> Result<(Frame<'a>, usize), DecodeError> {
    decode_inner(buf, Some(scratch))
}

fn decode_inner<'a>(
    buf: &'a [u8],
    scratch: Option<&mut Scratch>,
) -> Result<(Frame<'a>, usize), DecodeError> {
    let len = check_header(buf)?;
    let end = FRAME_HEADER_LEN + len;
    let payload = buf
        .get(FRAME_HEADER_LEN..end)
        .ok_or(DecodeError::Incomplete)?;
    let covered = buf.get(..CRC_COVERED_HEADER_LEN).unwrap_or_default();
    if frame_crc(covered, payload, scratch) != u32_at(buf, CRC_COVERED_HEADER_LEN) {
        return Err(DecodeError::Bad("CRC mismatch"));
    }
    Ok((frame_at(buf, payload), end))
}

fn frame_at<'a>(buf: &[u8], payload: &'a [u8]) -> Frame<'a> {
    Frame {
        lsn: u64_at(buf, 12),
        kind: KIND_RECORD,
        flags: buf.get(9).copied().unwrap_or(0),
        payload,
    }
}

/// Payloads up to this length have their CRC checked over a copy in [`Scratch`].
const SCRATCH_PAYLOAD_MAX: usize = 1024;

/// A buffer, reused from frame to frame, for checking a frame's CRC in one pass.
///
/// NOTE: the CRC covers bytes 0..20 and the payload, which are not adjacent, and a decoder may
/// not write into what it reads (a map of the file). For small records, copying the two pieces
/// together and hashing once beats hashing them apart (see [`encode_into`]): about 27 ns instead
/// of 35 ns for a 123-byte payload on the development VM, and replay is mostly CRC.
#[derive(Debug)]
pub struct Scratch {
    buf: Vec<u8>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            buf: vec![0; CRC_COVERED_HEADER_LEN + SCRATCH_PAYLOAD_MAX],
        }
    }
}

/// The CRC of a frame: over `covered` (header bytes 0..20), then `payload`.
fn frame_crc(covered: &[u8], payload: &[u8], scratch: Option<&mut Scratch>) -> u32 {
    if let Some(s) = scratch
        && payload.len() <= SCRATCH_PAYLOAD_MAX
        && let Some(joined) = s.buf.get_mut(..covered.len() + payload.len())
    {
        let (head, rest) = joined.split_at_mut(covered.len());
        head.copy_from_slice(covered);
        rest.copy_from_slice(payload);
        let mut hasher = new_hasher();
        hasher.update(joined);
        return hasher.finalize();
    }
    let mut hasher = new_hasher();
    hasher.update(covered);
    hasher.update(payload);
    hasher.finalize()
}

/// The frame at the start of `buf`, which [`decode`] accepted before: the header is read, not
/// checked again, and the CRC is not recomputed. `None` if `buf` is too short for it.
///
/// Lets a reader deliver a batch it has validated frame by frame without hashing it twice.
pub(crate) fn reread(buf: &[u8]) -> Option<(Frame<'_>, usize)> {
    let len = u32_at(buf, 0) as usize;
    let end = FRAME_HEADER_LEN.checked_add(len)?;
    let payload = buf.get(FRAME_HEADER_LEN..end)?;
    debug_assert_eq!(
        decode(buf).map(|(f, n)| (f.lsn, n)),
        Ok((u64_at(buf, 12), end))
    );
    Some((frame_at(buf, payload), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_golden_bytes() {
        let mut out = Vec::new();
        encode_into(&mut out, 7, FLAGS_SINGLE, b"abc");
        assert_eq!(out.len(), encoded_len(3));
        assert_eq!(
            out.get(..12),
            Some(&[3, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff, 1, 3, 0, 0][..])
        );
        let (f, n) = decode(&out).expect("should decode");
        assert_eq!(
            (f.lsn, f.flags, f.payload, n),
            (7, FLAGS_SINGLE, &b"abc"[..], 27)
        );
    }

    /// The one-pass CRC check (payloads up to 1 KiB) and the two-call one agree on every
    /// frame and on every damaged copy of it, on both sides of the threshold; `reread` returns
    /// what `decode` did.
    #[test]
    fn decode_with_scratch_agrees_with_decode() {
        let mut scratch = Scratch::default();
        for len in [0usize, 1, 107, 108, 123, 1023, 1024, 1025, 5000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut out = Vec::new();
            encode_into(&mut out, 42, FLAGS_SINGLE, &payload);
            let plain = decode(&out).map(|(f, n)| (f.lsn, f.payload.to_vec(), n));
            let with = decode_with(&out, &mut scratch).map(|(f, n)| (f.lsn, f.payload.to_vec(), n));
            assert_eq!(plain, Ok((42, payload.clone(), out.len())), "len {len}");
            assert_eq!(with, plain, "len {len}");
            let again = reread(&out).map(|(f, n)| (f.lsn, f.payload.to_vec(), n));
            assert_eq!(again, plain.ok(), "len {len}");
            for at in [20, 21, 23, 24, out.len() - 1] {
                let mut bad = out.clone();
                let Some(b) = bad.get_mut(at) else { continue };
                *b ^= 0x40;
                assert_eq!(decode_with(&bad, &mut scratch).err(), decode(&bad).err());
                assert!(decode(&bad).is_err(), "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn zeros_never_decode() {
        for n in 0..64 {
            assert!(decode(&vec![0u8; n]).is_err());
        }
    }
}
