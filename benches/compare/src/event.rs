//! The benchmark event and its deterministic generator (see `shared/benchmark-workloads.md`).
//!
//! Encoding, all integers little-endian, 123 bytes in total:
//!
//! | field    | bytes | meaning                                                        |
//! |----------|------:|----------------------------------------------------------------|
//! | task_id  |     8 | u64                                                            |
//! | seq      |     4 | u32, 1-based position of the event in its task's history       |
//! | kind     |     1 | 0 created, 1 started, 2 progress, 3 completed, 4 failed, 5 cancelled |
//! | ts_ms    |     8 | u64, milliseconds since the Unix epoch                         |
//! | text_len |     2 | u16, always `TEXT_LEN`                                         |
//! | text     |   100 | title, worker, progress message or error, space padded         |

use std::fmt::Write as _;

/// Bytes of free text per event.
pub const TEXT_LEN: usize = 100;
/// Bytes of one encoded event.
pub const EVENT_LEN: usize = 8 + 4 + 1 + 8 + 2 + TEXT_LEN;
const _: () = assert!(EVENT_LEN == 123);

/// Events per task: created, started, progress, progress, terminal.
pub const EVENTS_PER_TASK: usize = 5;
/// Tasks interleaved together: within a block every task gets its first event, then its second...
pub const BLOCK_TASKS: usize = 1_000;

pub type Event = [u8; EVENT_LEN];

/// The fields the benchmarks rebuild state from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub task_id: u64,
    pub seq: u32,
    pub kind: u8,
    pub ts_ms: u64,
}

pub fn encode(h: Header, text: &str) -> Event {
    let mut ev = [b' '; EVENT_LEN];
    ev[0..8].copy_from_slice(&h.task_id.to_le_bytes());
    ev[8..12].copy_from_slice(&h.seq.to_le_bytes());
    ev[12] = h.kind;
    ev[13..21].copy_from_slice(&h.ts_ms.to_le_bytes());
    ev[21..23].copy_from_slice(&(TEXT_LEN as u16).to_le_bytes());
    let t = text.as_bytes();
    let n = t.len().min(TEXT_LEN);
    ev[23..23 + n].copy_from_slice(&t[..n]);
    ev
}

/// Decodes the header of an encoded event. Panics on a short slice: every system hands back
/// exactly the bytes it was given, and a mismatch is a bug worth stopping the run for.
pub fn decode(ev: &[u8]) -> Header {
    assert!(
        ev.len() >= EVENT_LEN,
        "event should be {EVENT_LEN} bytes, got {}",
        ev.len()
    );
    Header {
        task_id: u64::from_le_bytes(ev[0..8].try_into().expect("8 bytes")),
        seq: u32::from_le_bytes(ev[8..12].try_into().expect("4 bytes")),
        kind: ev[12],
        ts_ms: u64::from_le_bytes(ev[13..21].try_into().expect("8 bytes")),
    }
}

/// The event's text, without the trailing padding.
#[cfg_attr(
    not(feature = "tasklog"),
    expect(dead_code, reason = "used by the tasklog store adapter")
)]
pub fn text(ev: &[u8]) -> &str {
    let t = ev.get(23..EVENT_LEN).unwrap_or_default();
    std::str::from_utf8(t).unwrap_or_default().trim_end()
}

/// splitmix64: a fixed seed gives the same events on every run and machine.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const WORKERS: [&str; 4] = ["worker-a", "worker-b", "worker-c", "worker-d"];
const TITLES: [&str; 4] = [
    "resize images",
    "send invoices",
    "rebuild index",
    "export report",
];

/// Generates `count` events for `count / 5` tasks (rounded up), interleaved in blocks of 1,000
/// tasks. Task ids start at 1. The terminal event is 70% completed, 20% failed, 10% cancelled.
pub fn generate(count: usize) -> Vec<Event> {
    let tasks = count.div_ceil(EVENTS_PER_TASK);
    let mut rng = Rng(0x07a5_c106);
    let terminal: Vec<u8> = (0..tasks)
        .map(|_| match rng.next() % 10 {
            0..=6 => 3,
            7 | 8 => 4,
            _ => 5,
        })
        .collect();
    let ts_base: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut out = Vec::with_capacity(count);
    let mut text = String::with_capacity(128);
    'blocks: for block in (0..tasks).step_by(BLOCK_TASKS) {
        let end = (block + BLOCK_TASKS).min(tasks);
        for step in 0..EVENTS_PER_TASK {
            for t in block..end {
                if out.len() == count {
                    break 'blocks;
                }
                let task_id = t as u64 + 1;
                let kind = match step {
                    0 => 0,
                    1 => 1,
                    2 | 3 => 2,
                    _ => terminal[t],
                };
                text.clear();
                let title = TITLES[t % TITLES.len()];
                let worker = WORKERS[t % WORKERS.len()];
                let _ = match kind {
                    0 => write!(text, "created: {title} #{task_id} queue=default priority=5"),
                    1 => write!(text, "started: {title} #{task_id} on {worker} attempt=1"),
                    2 => write!(
                        text,
                        "progress: {title} #{task_id} {}% on {worker}",
                        step * 40 - 40
                    ),
                    3 => write!(text, "completed: {title} #{task_id} on {worker} in 1234 ms"),
                    4 => write!(
                        text,
                        "failed: {title} #{task_id} on {worker}: connection reset by peer"
                    ),
                    _ => write!(
                        text,
                        "cancelled: {title} #{task_id} by operator before completion"
                    ),
                };
                let ts_ms = ts_base + out.len() as u64;
                out.push(encode(
                    Header {
                        task_id,
                        seq: step as u32 + 1,
                        kind,
                        ts_ms,
                    },
                    &text,
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape() {
        let evs = generate(10_000);
        assert_eq!(evs.len(), 10_000);
        let h = decode(&evs[0]);
        assert_eq!((h.task_id, h.seq, h.kind), (1, 1, 0));
        let h = decode(&evs[1_000]);
        assert_eq!((h.task_id, h.seq, h.kind), (1, 2, 1));
        assert_eq!(generate(10_000), evs, "generator should be deterministic");
    }
}
