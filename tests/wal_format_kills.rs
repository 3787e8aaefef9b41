//! The byte-level checks of the log's formats (docs/format.md), on bytes that carry a valid CRC
//! but break one rule each: a CRC proves only that some writer wrote the bytes, so these checks
//! are what stands between a foreign or future file and a replay. Each test names the
//! cargo-mutants survivors of `src/wal/frame.rs` and `src/wal/segment/header.rs` it kills
//! (issue #23; docs/durability.md, mutation testing).

use std::path::Path;

use tasklog::wal::frame::{self, DecodeError, FLAGS_SINGLE};
use tasklog::wal::segment::header::{LSN_SANE_MAX, SegmentHeader, parse_segment_name};

/// Rewrites the CRC of the frame at the start of `bytes` (covering header bytes 0..20, then the
/// payload), after a test changed a header byte.
fn reseal_frame(bytes: &mut [u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..20]);
    hasher.update(&bytes[24..]);
    let crc = hasher.finalize();
    bytes[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// A frame with a flag bit this version does not know, or non-zero reserved bytes, is refused
/// even with a good CRC. Kills `||` → `&&` in `check_header`'s flags test.
#[test]
fn a_frame_with_an_unknown_flag_or_reserved_bits_is_refused_whatever_its_crc() {
    let mut good = Vec::new();
    frame::encode_into(&mut good, 7, FLAGS_SINGLE, b"payload");
    assert!(frame::decode(&good).is_ok());

    let mut unknown_flag = good.clone();
    unknown_flag[9] = FLAGS_SINGLE | 0b100;
    reseal_frame(&mut unknown_flag);
    assert_eq!(
        frame::decode(&unknown_flag).map(|(f, _)| f.lsn),
        Err(DecodeError::Bad("unknown flags"))
    );

    let mut reserved = good.clone();
    reserved[10] = 1;
    reseal_frame(&mut reserved);
    assert_eq!(
        frame::decode(&reserved).map(|(f, _)| f.lsn),
        Err(DecodeError::Bad("unknown flags"))
    );
}

/// At the very end of a file, fewer than 8 bytes left are the end-of-data marker when they are
/// all zero, and an unfinished write when any is not. Kills `== 0` → `!= 0` in `check_header`.
#[test]
fn a_short_tail_is_the_end_marker_when_zero_and_unfinished_otherwise() {
    for tail in [&[][..], &[0][..], &[0, 0, 0][..], &[0; 7][..]] {
        assert_eq!(
            frame::decode(tail).map(|(f, _)| f.lsn),
            Err(DecodeError::Zero),
            "{tail:?}"
        );
    }
    for tail in [&[1][..], &[0, 0, 9][..], &[0, 0, 0, 0, 0, 0, 1][..]] {
        assert_eq!(
            frame::decode(tail).map(|(f, _)| f.lsn),
            Err(DecodeError::Incomplete),
            "{tail:?}"
        );
    }
}

fn header(first_lsn: u64, prev_first_lsn: u64) -> [u8; 48] {
    SegmentHeader {
        first_lsn,
        prev_first_lsn,
        segment_bytes_max: 1 << 20,
    }
    .encode()
}

fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
    SegmentHeader::decode(bytes, Path::new("00000000000000000001.seg")).map_err(|e| e.to_string())
}

/// Rewrites a segment header's CRC (bytes 44..48, over 0..44) after a test changed a field.
fn reseal_header(bytes: &mut [u8; 48]) {
    let crc = crc32fast::hash(&bytes[..44]);
    bytes[44..48].copy_from_slice(&crc.to_le_bytes());
}

/// A segment header with a wrong header length or a non-zero reserved field is refused, each
/// on its own, whatever its CRC. Kills `||` → `&&` in `SegmentHeader::decode`'s length test.
#[test]
fn a_segment_header_with_a_wrong_length_or_reserved_field_is_refused() {
    assert!(decode(&header(1, 0)).is_ok());
    let mut wrong_len = header(1, 0);
    wrong_len[12..16].copy_from_slice(&64u32.to_le_bytes());
    reseal_header(&mut wrong_len);
    let e = decode(&wrong_len).unwrap_err();
    assert!(e.contains("bad header length or reserved field"), "{e}");
    let mut reserved = header(1, 0);
    reserved[40] = 1;
    reseal_header(&mut reserved);
    let e = decode(&reserved).unwrap_err();
    assert!(e.contains("bad header length or reserved field"), "{e}");
}

/// First LSNs: 0 is impossible, a previous segment starting at or after this one is
/// impossible, and anything above `LSN_SANE_MAX` is absurd; `LSN_SANE_MAX` itself is accepted.
/// Kills `||` → `&&` in the first-LSN test and `>` → `==` / `>=` in the sanity bound.
#[test]
fn a_segment_header_with_an_impossible_or_absurd_first_lsn_is_refused() {
    assert!(
        decode(&header(0, 0))
            .unwrap_err()
            .contains("impossible first LSN")
    );
    assert!(
        decode(&header(5, 7))
            .unwrap_err()
            .contains("impossible first LSN")
    );
    assert!(
        decode(&header(5, 5))
            .unwrap_err()
            .contains("impossible first LSN")
    );
    assert!(decode(&header(5, 4)).is_ok());
    assert!(decode(&header(LSN_SANE_MAX, 1)).is_ok());
    let e = decode(&header(LSN_SANE_MAX + 1, 1)).unwrap_err();
    assert!(e.contains("absurd first LSN"), "{e}");
    let e = decode(&header(u64::MAX, 1)).unwrap_err();
    assert!(e.contains("absurd first LSN"), "{e}");
}

/// Only `<20 digits>.seg` names a segment: a name of 19 or 21 digits is another file (the log
/// ignores it). Kills `||` → `&&` in `parse_segment_name`.
#[test]
fn only_a_twenty_digit_name_is_a_segment() {
    assert_eq!(
        parse_segment_name(Path::new("00000000000000000001.seg")),
        Some(1)
    );
    for name in [
        "0000000000000000001.seg",
        "000000000000000000001.seg",
        "0000000000000000000x.seg",
        "00000000000000000001.seg.staging",
    ] {
        assert_eq!(parse_segment_name(Path::new(name)), None, "{name}");
    }
}
