//! Percentiles, medians and the per-run sample.

use std::time::Duration;

use crate::event::EVENT_LEN;

/// What one repetition of one workload on one system measured.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub secs: f64,
    pub events_per_s: f64,
    /// Event bytes (123 per event) per second.
    pub mib_per_s: f64,
    /// Per-append latency, microseconds; `None` where the workload has none (W3, W4).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Sum of the lengths of the files the system left behind, after closing it.
    pub bytes_on_disk: u64,
    /// fdatasyncs the system counted itself during the timed part, where it counts them.
    pub fsyncs: Option<f64>,
}

impl Sample {
    pub fn new(events: usize, elapsed: Duration, lat_ns: &mut [u64], bytes_on_disk: u64) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        lat_ns.sort_unstable();
        let pct = |q: f64| percentile_us(lat_ns, q);
        Sample {
            secs,
            events_per_s: events as f64 / secs,
            mib_per_s: (events * EVENT_LEN) as f64 / secs / (1 << 20) as f64,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            max_us: pct(1.0),
            bytes_on_disk,
            fsyncs: None,
        }
    }
}

/// The nearest-rank `q` percentile of `sorted_ns` (ascending nanoseconds), in microseconds;
/// `None` when empty.
pub fn percentile_us(sorted_ns: &[u64], q: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len());
    Some(sorted_ns[rank - 1] as f64 / 1_000.0)
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median of every field independently over the repetitions.
pub fn median_sample(samples: &[Sample]) -> Option<Sample> {
    if samples.is_empty() {
        return None;
    }
    let m = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect()).unwrap_or(0.0);
    let mo = |f: &dyn Fn(&Sample) -> Option<f64>| median(samples.iter().filter_map(f).collect());
    Some(Sample {
        secs: m(&|s| s.secs),
        events_per_s: m(&|s| s.events_per_s),
        mib_per_s: m(&|s| s.mib_per_s),
        p50_us: mo(&|s| s.p50_us),
        p99_us: mo(&|s| s.p99_us),
        max_us: mo(&|s| s.max_us),
        bytes_on_disk: m(&|s| s.bytes_on_disk as f64) as u64,
        fsyncs: mo(&|s| s.fsyncs),
    })
}
