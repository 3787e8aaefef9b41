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
    let sub = (i % 4) as u128;
    // In u128: the last bucket's bound, 8 << 61, does not fit in u64 (it wrapped to 0 once).
    let upper = ((4 + sub + 1) << (msb - 2)) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
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

    /// Every bucket holds exactly the values from just above its predecessor's upper bound up to
    /// its own, and that bound is within the promised quarter of an octave (about 19-25%) of
    /// each value in it.
    #[test]
    fn each_value_lands_in_the_tightest_bucket_above_it() {
        let mut values: Vec<u64> = (0..5_000).collect();
        for shift in 12..64 {
            let base = 1u64 << shift;
            values.extend([base - 1, base, base + 1, base + base / 4, base + base / 2]);
        }
        values.push(u64::MAX);
        for us in values {
            let i = bucket_of(us);
            assert!(i < BUCKETS, "{us}");
            let upper = bucket_upper(i);
            assert!(upper >= us, "{us} in bucket {i} bounded by {upper}");
            if us < 4 {
                assert_eq!((i, upper), (us as usize, us), "small values are exact");
                continue;
            }
            if i == BUCKETS - 1 {
                continue;
            }
            let below = if i == 8 { 3 } else { bucket_upper(i - 1) };
            assert!(
                below < us,
                "{us} in bucket {i}, but bucket {} reaches {below}",
                i - 1
            );
            assert!(
                upper - us <= us / 4,
                "{us} bounded by {upper}: more than 25% above it"
            );
        }
        // Exact edges: 4..=4 is bucket 8, 7 is bucket 11, 8..=9 bucket 12.
        assert_eq!(
            [bucket_of(4), bucket_of(7), bucket_of(8), bucket_of(9)],
            [8, 11, 12, 12]
        );
        assert_eq!(
            [bucket_upper(8), bucket_upper(11), bucket_upper(12)],
            [4, 7, 9]
        );
        assert_eq!(
            bucket_upper(5),
            3,
            "the unused buckets 4..8 bound nothing above 3"
        );
    }

    #[test]
    fn counts_and_percentiles_follow_the_recorded_fsyncs() {
        let c = Counters::default();
        assert_eq!(c.latency(), LatencySummary::default(), "nothing recorded");
        for _ in 0..98 {
            c.record_fsync(Duration::from_micros(1_000));
        }
        c.record_fsync(Duration::from_micros(400_000));
        c.record_fsync(Duration::from_micros(400_000));
        assert_eq!(c.fsyncs.load(Ordering::Relaxed), 100);
        let l = c.latency();
        assert_eq!((l.count, l.max_us), (100, 400_000));
        let thousand = bucket_upper(bucket_of(1_000));
        assert_eq!((l.p50_us, l.p90_us), (thousand, thousand));
        // The 99th of 100 is the first 400 ms one: its bucket's bound, cut to the exact maximum.
        assert_eq!(l.p99_us, 400_000);

        let one = Counters::default();
        one.record_fsync(Duration::from_micros(3));
        let l = one.latency();
        assert_eq!(
            (l.count, l.p50_us, l.p90_us, l.p99_us, l.max_us),
            (1, 3, 3, 3, 3)
        );

        // A percentile's rank rounds up: of 10 values, the 50th percentile is the 5th, the 90th
        // the 9th, the 99th the 10th.
        let ten = Counters::default();
        for us in [1, 2, 3, 10, 20, 30, 40, 50, 60, 70] {
            ten.record_fsync(Duration::from_micros(us));
        }
        let l = ten.latency();
        assert_eq!(
            (l.p50_us, l.p90_us, l.p99_us, l.max_us),
            (
                bucket_upper(bucket_of(20)),
                bucket_upper(bucket_of(60)),
                70,
                70
            )
        );

        let huge = Counters::default();
        huge.record_fsync(Duration::MAX);
        let l = huge.latency();
        assert_eq!(
            (l.p50_us, l.max_us),
            (u64::MAX, u64::MAX),
            "past u64 µs saturates"
        );
    }

    /// Counts the events (log lines) emitted while it is the default subscriber.
    struct CountEvents(std::sync::Arc<AtomicU64>);

    impl tracing::Subscriber for CountEvents {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn only_an_fsync_of_a_second_or_more_is_logged() {
        let events = std::sync::Arc::new(AtomicU64::new(0));
        let c = Counters::default();
        tracing::subscriber::with_default(CountEvents(events.clone()), || {
            c.record_fsync(Duration::from_millis(999));
            c.record_fsync(Duration::from_micros(10));
            assert_eq!(
                events.load(Ordering::Relaxed),
                0,
                "fast fsyncs are not logged"
            );
            c.record_fsync(SLOW_FSYNC);
            assert_eq!(events.load(Ordering::Relaxed), 1, "a one-second fsync is");
        });
    }

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
