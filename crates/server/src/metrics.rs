//! `/metrics` figures: what the server counts itself (requests by route and status, request
//! latency) beside what it reads from the store when scraped, written in the Prometheus text
//! exposition format 0.0.4.
//!
//! Names follow the Prometheus conventions (base units, `_total` on counters):
//!
//! | metric | type | from |
//! |---|---|---|
//! | `tasklog_http_requests_total{method,route,status}` | counter | the server |
//! | `tasklog_http_request_duration_seconds{method,route}` | histogram | the server |
//! | `tasklog_tasks{state}` | gauge | live tasks by state |
//! | `tasklog_events_appended_total` | counter | log appends since the store opened |
//! | `tasklog_log_bytes`, `tasklog_log_segments`, `tasklog_last_lsn`, `tasklog_durable_lsn` | gauge | the log |
//! | `tasklog_fsyncs_total` | counter | fdatasync calls since open |
//! | `tasklog_fsync_duration_seconds{quantile}` | summary | the log's latency percentiles (no `_sum`: the log keeps none) |
//! | `tasklog_fsync_duration_max_seconds` | gauge | the slowest fdatasync |
//! | `tasklog_snapshot_age_seconds` | gauge | the newest snapshot's age (no sample without one) |
//! | `tasklog_snapshots` | gauge | snapshot files |
//! | `tasklog_runtime_runs{kind,outcome}` | gauge | finished tasks carrying `runtime.kind`, by outcome (completed, failed, cancelled); a gauge since retention removes tasks |
//! | `tasklog_poisoned` | gauge | 1 while the store refuses writes |
//! | `tasklog_store_readable` | gauge | 0 when the tasks could not be read (poisoned): only the log's figures are given |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use tasklog::store::Stats;

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS_SECS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Most distinct (method, route, status) series kept; later ones are counted under
/// `route="(other)"` so a misbehaving client cannot grow memory without bound.
pub const SERIES_MAX: usize = 2_000;

#[derive(Default)]
struct Histogram {
    /// Count per bucket (not cumulative), then +Inf.
    buckets: [u64; LATENCY_BUCKETS_SECS.len() + 1],
    sum_secs: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = LATENCY_BUCKETS_SECS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS_SECS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum_secs += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Counts {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<(String, String), Histogram>,
}

/// The server's own counters. Shared by every request.
#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
}

impl Metrics {
    /// Records one answered request. `route` should be the matched route template
    /// (`/v1/tasks/{id}`), not the raw path.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        let known = c
            .requests
            .contains_key(&(method.to_string(), route.to_string(), status));
        let route = if known || c.requests.len() < SERIES_MAX {
            route
        } else {
            "(other)"
        };
        *c.requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        c.latency
            .entry((method.to_string(), route.to_string()))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// The server's series in the text format.
    fn write_http(&self, out: &mut String) {
        let Ok(c) = self.counts.lock() else {
            return;
        };
        family(
            out,
            "tasklog_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route template and status.",
        );
        for ((method, route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "tasklog_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        family(
            out,
            "tasklog_http_request_duration_seconds",
            "histogram",
            "Time from receiving a request to its response, by method and route template.",
        );
        for ((method, route), h) in &c.latency {
            let labels = format!("method=\"{}\",route=\"{}\"", escape(method), escape(route));
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS_SECS.iter().enumerate() {
                cumulative += h.buckets.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "tasklog_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "tasklog_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tasklog_http_request_duration_seconds_sum{{{labels}}} {}",
                float(h.sum_secs)
            );
            let _ = writeln!(
                out,
                "tasklog_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

/// What the store contributes to a scrape.
pub struct StoreFigures {
    /// The store's statistics.
    pub stats: Stats,
    /// Finished runtime tasks: (kind, outcome) -> count.
    pub runs: BTreeMap<(String, String), u64>,
    /// The store refuses writes.
    pub poisoned: bool,
    /// The tasks could be read (false: only the log's figures are real).
    pub readable: bool,
}

/// Gathers the store's figures (one pass over the finished tasks for the runtime runs). When
/// the store cannot be read (poisoned: reads wait on a durability that will not come), only the
/// log's own figures are given, with `readable: false`: a scrape must still work then.
pub fn store_figures(store: &tasklog::Store) -> StoreFigures {
    let poisoned = store.poisoned().is_some();
    match read_figures(store) {
        Ok((stats, runs)) => StoreFigures {
            stats,
            runs,
            poisoned,
            readable: true,
        },
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the store cannot be read; exposing the log's figures only");
            let mut stats = Stats::default();
            stats.health.add_log(&store.log_stats());
            stats.health.last_lsn = store.last_lsn();
            StoreFigures {
                stats,
                runs: BTreeMap::new(),
                poisoned,
                readable: false,
            }
        }
    }
}

type Runs = BTreeMap<(String, String), u64>;

fn read_figures(store: &tasklog::Store) -> tasklog::Result<(Stats, Runs)> {
    let stats = store.stats(None)?;
    let mut runs = BTreeMap::new();
    let finished = [
        tasklog::TaskState::Completed,
        tasklog::TaskState::Failed,
        tasklog::TaskState::Cancelled,
        tasklog::TaskState::Discarded,
    ];
    let finished = tasklog::store::Filter {
        states: finished.to_vec(),
        ..Default::default()
    };
    // A page at a time: a million finished tasks copied at once are about 1 GB.
    store.for_each_task(&finished, &mut |t| {
        if let Some(kind) = t
            .metadata
            .get(tasklog::runtime::META_KIND)
            .and_then(serde_json::Value::as_str)
        {
            *runs
                .entry((kind.to_string(), t.state.as_str().to_string()))
                .or_default() += 1;
        }
        Ok(())
    })?;
    Ok((stats, runs))
}

/// The whole exposition: the server's series, then the store's.
pub fn render(metrics: &Metrics, store: &StoreFigures) -> String {
    let mut out = String::with_capacity(8 << 10);
    metrics.write_http(&mut out);
    write_store(&mut out, store);
    out
}

fn write_store(out: &mut String, f: &StoreFigures) {
    let s = &f.stats;
    let h = &s.health;
    family(out, "tasklog_tasks", "gauge", "Live tasks by state.");
    for (state, n) in &s.by_state {
        let _ = writeln!(out, "tasklog_tasks{{state=\"{}\"}} {n}", escape(state));
    }
    simple(
        out,
        "tasklog_events_appended_total",
        "counter",
        "Log records appended since the store was opened.",
        h.appends,
    );
    simple(
        out,
        "tasklog_log_bytes",
        "gauge",
        "Bytes in log segments.",
        h.log_bytes,
    );
    simple(
        out,
        "tasklog_log_segments",
        "gauge",
        "Log segment files.",
        h.log_segments as u64,
    );
    simple(
        out,
        "tasklog_last_lsn",
        "gauge",
        "LSN of the last applied record.",
        h.last_lsn,
    );
    simple(
        out,
        "tasklog_durable_lsn",
        "gauge",
        "Highest LSN known durable.",
        h.durable_lsn,
    );
    simple(
        out,
        "tasklog_fsyncs_total",
        "counter",
        "fdatasync calls on the log since the store was opened.",
        h.fsyncs,
    );
    family(
        out,
        "tasklog_fsync_duration_seconds",
        "summary",
        "fdatasync latency of the log over its recent window (quantiles only: the log keeps no sum).",
    );
    for (q, us) in [
        ("0.5", h.fsync_p50_us),
        ("0.9", h.fsync_p90_us),
        ("0.99", h.fsync_p99_us),
    ] {
        let _ = writeln!(
            out,
            "tasklog_fsync_duration_seconds{{quantile=\"{q}\"}} {}",
            float(us as f64 / 1e6)
        );
    }
    let _ = writeln!(out, "tasklog_fsync_duration_seconds_count {}", h.fsyncs);
    family(
        out,
        "tasklog_fsync_duration_max_seconds",
        "gauge",
        "The slowest fdatasync of the log's recent window.",
    );
    let _ = writeln!(
        out,
        "tasklog_fsync_duration_max_seconds {}",
        float(h.fsync_max_us as f64 / 1e6)
    );
    simple(
        out,
        "tasklog_snapshots",
        "gauge",
        "Snapshot files on disk.",
        h.snapshots as u64,
    );
    family(
        out,
        "tasklog_snapshot_age_seconds",
        "gauge",
        "Age of the newest snapshot (no sample when there is none).",
    );
    if let Some(age) = h.snapshot_age_secs {
        let _ = writeln!(out, "tasklog_snapshot_age_seconds {}", float(age));
    }
    family(
        out,
        "tasklog_runtime_runs",
        "gauge",
        "Finished tasks with a runtime.kind, by kind and outcome (completed, failed, cancelled).",
    );
    for ((kind, outcome), n) in &f.runs {
        let _ = writeln!(
            out,
            "tasklog_runtime_runs{{kind=\"{}\",outcome=\"{}\"}} {n}",
            escape(kind),
            escape(outcome)
        );
    }
    simple(
        out,
        "tasklog_poisoned",
        "gauge",
        "1 when the store refuses writes after a failed log write (reopen to recover).",
        u64::from(f.poisoned),
    );
    simple(
        out,
        "tasklog_store_readable",
        "gauge",
        "1 when the tasks could be read for this scrape (0: task figures are missing).",
        u64::from(f.readable),
    );
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn simple(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A float as the text format writes it.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}
