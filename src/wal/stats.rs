//! Counters and a small fixed fsync-latency histogram (log2 buckets with 4 sub-buckets, so a
//! percentile is within about 19% of the true value; the maximum is exact).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::LatencySummary;

const BUCKETS: usize = 64 * 4;
/// Fsyncs at least this slow are logged as warnings.
const SLOW_FSYNC: Duration = Duration::from_secs(1);

/// Live counters shared by every clone of a log.
#[derive(Debug)]
pub struct Counters {
    pub fsyncs: AtomicU64,
    pub bytes_written: AtomicU64,
    latency: Mutex<Histogram>,
}

#[derive(Debug)]
struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    max_us: u64,
}

fn bucket_of(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let msb = 63 - u64::from(us.leading_zeros());
    let sub = (us >> (msb - 2)) & 0b11;
    ((msb as usize) * 4 + sub as usize).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in µs.
fn bucket_upper(i: usize) -> u64 {
    if i < 8 {
        // Buckets 4..8 are never used: values 0..4 have their own, 4.. start at bucket 8.
        return (i as u64).min(3);
    }
    let msb = (i / 4) as u32;
    let sub = (i % 4) as u64;
    ((4 + sub + 1) << (msb - 2)).saturating_sub(1)
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            fsyncs: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            latency: Mutex::new(Histogram {
                counts: Box::new([0; BUCKETS]),
                count: 0,
                max_us: 0,
            }),
        }
    }
}

impl Counters {
    /// Records one fsync and how long it took.
    pub fn record_fsync(&self, took: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        if took >= SLOW_FSYNC {
            // etcd's rule of thumb: a second-long fsync means the disk cannot keep up.
            tracing::warn!(took_ms = took.as_millis() as u64, "slow fdatasync");
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut h = self.latency.lock();
        if let Some(c) = h.counts.get_mut(bucket_of(us)) {
            *c += 1;
        }
        h.count += 1;
        h.max_us = h.max_us.max(us);
    }

    /// p50/p90/p99/max of fsync latency.
    pub fn latency(&self) -> LatencySummary {
        let h = self.latency.lock();
        let pct = |p: u64| -> u64 {
            let want = (h.count * p).div_ceil(100).max(1);
            let mut seen = 0;
            for (i, c) in h.counts.iter().enumerate() {
                seen += c;
                if seen >= want {
                    return bucket_upper(i).min(h.max_us);
                }
            }
            h.max_us
        };
        if h.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.count,
            p50_us: pct(50),
            p90_us: pct(90),
            p99_us: pct(99),
            max_us: h.max_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 123_456, u64::MAX / 2] {
            assert!(bucket_upper(bucket_of(us)) >= us, "{us}");
        }
        let mut last = 0;
        for i in 0..200 {
            assert!(bucket_upper(i) >= last);
            last = bucket_upper(i);
        }
    }
}
