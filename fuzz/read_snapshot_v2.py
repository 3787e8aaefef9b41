# An independent reader of tasklog snapshot formats v2 and v3, written from docs/format.md
# alone (and, for v3's blocks, the LZ4 block format's public description).
# python3 fuzz/read_snapshot_v2.py FILE.snap [EXPECTED.json]
# Checks every header field and CRC, decodes every record, task and history entry, and prints
# a summary; with an expected dump (tests/fixtures/*.expected.json) it compares each history's
# LSNs, kinds and states, and each live task's state and title.
import json, struct, sys, zlib

KINDS = ["created", "updated", "started", "heartbeat", "progress", "checkpoint", "output",
         "completed", "failed", "cancelled", "requeued", "retried", "interrupted", "removed",
         "imported"]
STATES = ["pending", "running", "completed", "failed", "cancelled"]


class Reader:
    def __init__(self, data):
        self.b, self.i = data, 0

    def byte(self):
        v = self.b[self.i]; self.i += 1; return v

    def varint(self):
        shift = v = 0
        while True:
            c = self.byte(); v |= (c & 0x7F) << shift; shift += 7
            if c < 0x80:
                return v

    def i64(self):
        z = self.varint(); return (z >> 1) ^ -(z & 1)

    def string(self):
        n = self.varint(); s = self.b[self.i:self.i + n]; self.i += n
        assert len(s) == n, "string past the end"
        return s.decode("utf-8")

    def option(self, f):
        tag = self.byte(); assert tag in (0, 1), tag
        return f() if tag else None

    def seq(self, f):
        return [f() for _ in range(self.varint())]


def task(r):  # the v1 Task DTO
    t = {"title": r.string(), "description": r.string(), "role": r.option(r.string),
         "state": STATES[r.byte()], "progress_percent": r.byte(),
         "progress_step": r.option(r.string), "progress_message": r.option(r.string),
         "created_at_ms": r.i64(), "updated_at_ms": r.i64(),
         "started_at_ms": r.option(r.i64), "completed_at_ms": r.option(r.i64),
         "provider": r.option(r.string), "model": r.option(r.string),
         "tags": r.seq(r.string), "metadata": r.seq(lambda: (r.string(), json.loads(r.string()))),
         "result": r.option(lambda: json.loads(r.string())), "last_error": r.option(r.string),
         "error_count": r.varint(), "attempt": r.varint(), "priority": r.byte(),
         "checkpoint": r.option(lambda: (r.string(), r.byte(), json.loads(r.string()), r.i64())),
         "outputs": r.seq(lambda: (r.byte(), r.string(), r.i64(), r.option(r.string),
                                   r.option(r.varint), r.option(r.string)))}
    return t


def history(arena, count):
    out, i = [], 0
    while i < len(arena):
        lsn, frm, to, n = struct.unpack_from("<QBBI", arena, i)
        event = arena[i + 14:i + 14 + n]; assert len(event) == n, "entry past its arena"
        assert event[0] == 1, "event version byte"
        r = Reader(event[1:]); task_id = r.string(); r.i64(); r.option(r.string)
        kind = KINDS[r.varint()]
        state = lambda c: None if c == 0xFF else STATES[c]
        out.append({"lsn": lsn, "kind": kind, "from": state(frm), "to": state(to), "task": task_id})
        i += 14 + n
    assert len(out) == count, (len(out), count)
    return out


def lz4_block(src, size):
    """Decompresses one LZ4 block (no frame) that must come to exactly `size` bytes."""
    out, i = bytearray(), 0
    while True:
        token = src[i]; i += 1
        n = token >> 4
        if n == 15:
            while True:
                c = src[i]; i += 1; n += c
                if c != 255:
                    break
        out += src[i:i + n]; i += n
        if i == len(src):
            break
        offset = src[i] | src[i + 1] << 8; i += 2
        assert 0 < offset <= len(out), "match offset"
        n = (token & 15) + 4
        if token & 15 == 15:
            while True:
                c = src[i]; i += 1; n += c
                if c != 255:
                    break
        for _ in range(n):
            out.append(out[-offset])
    assert len(out) == size, "block decompresses to its length"
    return bytes(out)


def histories_v3(section):
    """The uncompressed histories of a v3 history section."""
    raw_len, block_bytes, codec = struct.unpack_from("<QII", section, 0)
    assert codec == 1 and 1024 <= block_bytes <= 16 << 20
    n = (raw_len + block_bytes - 1) // block_bytes
    ends = struct.unpack_from("<%dQ" % n, section, 16)
    first, start, out = 16 + 8 * n, 0, bytearray()
    for i, end in enumerate(ends):
        size = min(block_bytes, raw_len - i * block_bytes)
        stored = section[first + start:first + end]
        assert 1 <= len(stored) <= size, "stored block length"
        out += stored if len(stored) == size else lz4_block(stored, size)
        start = end
    assert first + start == len(section), "blocks end the section"
    return bytes(out)


def read(data):
    assert data[:8] == b"TASKSNAP"
    version, flags, lsn, records, tasks_len, history_len, tasks_crc, history_crc, reserved, \
        header_crc = struct.unpack_from("<IIQQQQIIII", data, 8)
    assert version in (2, 3) and flags == 0 and reserved == 0
    assert zlib.crc32(data[:60]) == header_crc, "header crc"
    assert 64 + tasks_len + history_len == len(data), "lengths"
    tasks, hist = data[64:64 + tasks_len], data[64 + tasks_len:]
    assert zlib.crc32(tasks) == tasks_crc and zlib.crc32(hist) == history_crc, "section crc"
    if version == 3:
        hist = histories_v3(hist)
    history_len = len(hist)
    r, out, next_offset, previous = Reader(tasks), {}, 0, None
    for _ in range(records):
        rid = r.string(); offset, length, count = r.varint(), r.varint(), r.varint()
        t = r.option(lambda: {"task": task(r), "version": r.varint(), "last_lsn": r.varint(),
                              "session": r.varint(),
                              "lease": r.option(lambda: (r.string(), r.i64(), r.varint()))})
        assert previous is None or previous.encode() < rid.encode(), "ids ascend"
        assert offset == next_offset, "histories tile the section"
        previous, next_offset = rid, offset + length
        out[rid] = {"task": t, "history": history(hist[offset:offset + length], count)}
    assert next_offset == history_len, "histories cover the section"
    request_ids = r.seq(lambda: (r.string(), r.string()))
    closed_sessions = r.seq(r.varint)
    assert r.i == len(tasks), "tasks section ends exactly"
    return lsn, out, request_ids, closed_sessions


def main():
    data = open(sys.argv[1], "rb").read()
    lsn, tasks, request_ids, closed = read(data)
    events = sum(len(t["history"]) for t in tasks.values())
    print(f"lsn {lsn}: {len(tasks)} ids, {events} events, request ids {request_ids}, "
          f"closed sessions {closed}")
    if len(sys.argv) > 2:
        expected = json.load(open(sys.argv[2]))
        for rid, t in tasks.items():
            want = [e for e in expected[rid]["history"] if e["lsn"] <= lsn]
            got = [{k: e[k] for k in ("lsn", "kind", "from", "to")} for e in t["history"]]
            assert got == [{k: e[k] for k in ("lsn", "kind", "from", "to")} for e in want], rid
            if t["task"] and t["task"]["last_lsn"] == (expected[rid]["task"] or {}).get("last_lsn"):
                assert t["task"]["task"]["title"] == expected[rid]["task"]["title"], rid
                assert t["task"]["task"]["state"] == expected[rid]["task"]["state"], rid
        print("matches", sys.argv[2])


main()
