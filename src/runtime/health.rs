//! Runtime health: queue depth, running and stuck work, recoveries, retries, success rate and
//! run-time percentiles.

use std::collections::BTreeMap;

use serde::Serialize;

/// A snapshot of the runtime's figures.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct RuntimeHealth {
    /// Queued tasks by kind, then priority.
    pub queue_depth: BTreeMap<String, BTreeMap<u8, usize>>,
    /// Handlers running now.
    pub running: usize,
    /// Tasks recovered after their worker died, by strategy.
    pub recovered: BTreeMap<String, u64>,
    /// Tasks whose lease expired while running (stuck), found by supervision.
    pub stuck: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Attempts that ran past their timeout (live runtime only).
    pub timed_out: u64,
    /// Timed-out handlers that ignored cancellation and were abandoned (live runtime only).
    pub abandoned: u64,
    /// Runs that completed.
    pub succeeded: u64,
    /// Runs that failed (errors and panics).
    pub failed: u64,
    /// Runs that ended cancelled.
    pub cancelled: u64,
    /// succeeded / (succeeded + failed), or 1 with no runs.
    pub success_rate: f64,
    /// Handler run time percentiles, in milliseconds.
    pub run_ms_p50: f64,
    /// 90th percentile.
    pub run_ms_p90: f64,
    /// 99th percentile.
    pub run_ms_p99: f64,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) recovered: BTreeMap<String, u64>,
    pub(crate) stuck: u64,
    pub(crate) retries: u64,
    pub(crate) timed_out: u64,
    pub(crate) abandoned: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    /// Recent run times (ms), a bounded window.
    pub(crate) run_ms: Vec<f64>,
}

const RUN_TIMES_KEPT: usize = 10_000;

impl Counters {
    pub(crate) fn record_run(&mut self, ms: f64) {
        if self.run_ms.len() >= RUN_TIMES_KEPT {
            self.run_ms.drain(..RUN_TIMES_KEPT / 2);
        }
        self.run_ms.push(ms);
    }

    pub(crate) fn report(&self) -> RuntimeHealth {
        let mut sorted = self.run_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let pct = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() - 1) as f64 * p).round() as usize;
            sorted.get(i).copied().unwrap_or_default()
        };
        let runs = self.succeeded + self.failed;
        RuntimeHealth {
            recovered: self.recovered.clone(),
            stuck: self.stuck,
            retries: self.retries,
            timed_out: self.timed_out,
            abandoned: self.abandoned,
            succeeded: self.succeeded,
            failed: self.failed,
            cancelled: self.cancelled,
            success_rate: if runs == 0 {
                1.0
            } else {
                self.succeeded as f64 / runs as f64
            },
            run_ms_p50: pct(0.5),
            run_ms_p90: pct(0.9),
            run_ms_p99: pct(0.99),
            ..RuntimeHealth::default()
        }
    }
}
