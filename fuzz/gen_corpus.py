# Writes the seed corpus (python3 fuzz/gen_corpus.py) from docs/format.md alone: an independent encoder.
import struct, zlib, os
out = "/work/wt-wal/fuzz/corpus/wal_decode"
def header(first, prev=0, segmax=1<<20, version=1):
    h = b"TLOGWAL\0" + struct.pack("<IIQQQI", version, 48, first, prev, segmax, 0)
    return h + struct.pack("<I", zlib.crc32(h))
def frame(lsn, payload, flags=3):
    h = struct.pack("<IIBBHQ", len(payload), len(payload) ^ 0xffffffff, 1, flags, 0, lsn)
    return h + struct.pack("<I", zlib.crc32(h + payload)) + payload
def frames(n, first=1):
    return b"".join(frame(first + i, b"payload %d" % i) for i in range(n))
batch = frame(1, b"a", 1) + frame(2, b"b", 0) + frame(3, b"c", 2)
seeds = {
    "valid_segment": header(1) + frames(8),
    "valid_batch": header(1) + batch + frame(4, b"after"),
    "torn_tail": (header(1) + frames(5))[:-7],
    "torn_batch": header(1) + frame(1, b"a", 1) + frame(2, b"b", 0),
    "zero_filled": header(1) + frames(3) + b"\0" * 256,
    "garbage_after_zero": header(1) + frames(2) + b"\0" * 16 + b"junk",
    "empty": b"",
    "header_only": header(1),
    "frames_only": frames(6),
    "unknown_version": header(1, version=2) + frames(2),
    "wrong_lsn": header(1) + frame(1, b"x") + frame(5, b"y"),
    "huge_len": header(1) + struct.pack("<II", 0x7fffffff, 0x80000000) + b"\1\3" + b"\0" * 30,
}
flipped = bytearray(header(1) + frames(4)); flipped[100] ^= 0x40
seeds["flipped"] = bytes(flipped)
mid = bytearray(header(1) + frames(6)); mid[60] ^= 1
seeds["flipped_mid_followed_by_valid"] = bytes(mid)
for name, data in seeds.items():
    open(os.path.join(out, name), "wb").write(data)
print(len(seeds))
