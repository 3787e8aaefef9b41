//! Output: human tables and key/value blocks, and JSON (exactly JSON on stdout, nothing else).

use std::io::{self, Write};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tasklog::task::Timestamp;
use tasklog::{Task, TaskState};

/// Writes `value` as pretty JSON followed by a newline.
pub fn json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A plain-text table: left-aligned columns separated by two spaces; the last column is not
/// padded.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the table.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_string()).collect();
        write_row(out, &widths, &header)?;
        for row in &self.rows {
            write_row(out, &widths, row)?;
        }
        Ok(())
    }
}

fn write_row(out: &mut dyn Write, widths: &[usize], cells: &[String]) -> io::Result<()> {
    let mut line = String::new();
    let last = cells.len().saturating_sub(1);
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        line.push_str(cell);
        if i < last {
            let pad = w.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

/// Shortens `text` to at most `max` characters, marking the cut with `…`.
pub fn clip(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn opt(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

fn time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.to_rfc3339())
}

/// Short form of a time for tables: `2026-11-22 20:14:38`.
fn short_time(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    s.get(..19).map_or(s.clone(), |p| p.replace('T', " "))
}

fn compact_json(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The task list as a table.
pub fn task_table(out: &mut dyn Write, tasks: &[Task]) -> io::Result<()> {
    let mut t = Table::new(vec![
        "ID", "STATE", "PROGRESS", "ATTEMPT", "ROLE", "PROVIDER", "CREATED", "TITLE",
    ]);
    for task in tasks {
        t.row(vec![
            task.id.clone(),
            task.state.to_string(),
            format!("{}%", task.progress.percent),
            task.attempt.to_string(),
            opt(task.role.as_deref()),
            opt(task.provider.as_deref()),
            short_time(task.created_at),
            clip(&task.title, 48),
        ]);
    }
    t.write(out)
}

/// One task as a readable key/value block.
pub fn task_block(out: &mut dyn Write, t: &Task) -> io::Result<()> {
    let mut kv: Vec<(&str, String)> = vec![
        ("id", t.id.clone()),
        ("title", t.title.clone()),
        ("description", t.description.clone()),
        ("state", t.state.to_string()),
        ("progress", progress_text(t)),
        ("role", opt(t.role.as_deref())),
        ("provider", opt(t.provider.as_deref())),
        ("model", opt(t.model.as_deref())),
        ("tags", t.tags.join(", ")),
        ("attempt", t.attempt.to_string()),
        ("priority", t.priority.to_string()),
        ("error count", t.error_count.to_string()),
        ("last error", opt(t.last_error.as_deref())),
        ("created", t.created_at.to_rfc3339()),
        ("updated", t.updated_at.to_rfc3339()),
        ("started", time(t.started_at)),
        ("completed", time(t.completed_at)),
        (
            "result",
            t.result.as_deref().map_or("-".into(), compact_json),
        ),
        ("version", t.version.to_string()),
        ("last lsn", t.last_lsn.to_string()),
    ];
    for (k, v) in &t.metadata {
        // The runtime's retry backoff is stored as ms since the epoch; shown as a time.
        let not_before = (k == tasklog::task::META_NOT_BEFORE)
            .then(|| v.as_i64())
            .flatten()
            .map(|ms| tasklog::task::Timestamp(ms).to_rfc3339());
        match not_before {
            Some(at) => kv.push((
                "not before",
                format!("{at} (earliest start of the next attempt)"),
            )),
            None => kv.push(("meta", format!("{k} = {}", compact_json(v)))),
        }
    }
    if let Some(c) = &t.checkpoint {
        kv.push((
            "checkpoint",
            format!(
                "{} at {}% ({}): {}",
                c.name,
                c.progress,
                c.at,
                clip(&compact_json(&c.data), 80)
            ),
        ));
    }
    if let Some(l) = &t.lease {
        kv.push(("lease", format!("{} until {}", l.owner, l.expires_at)));
    }
    for o in &t.outputs {
        kv.push((
            "output",
            format!("[{}] {}", o.kind.as_str(), clip(&o.content, 80)),
        ));
    }
    for (k, v) in kv {
        writeln!(out, "{k:>12}: {v}")?;
    }
    Ok(())
}

fn progress_text(t: &Task) -> String {
    let mut s = format!("{}%", t.progress.percent);
    if let Some(step) = &t.progress.step {
        s.push_str(&format!(" [{step}]"));
    }
    if let Some(m) = &t.progress.message {
        s.push_str(&format!(" {m}"));
    }
    s
}

/// The object without its null fields (for one-line summaries).
pub fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One history event as `history --json` prints it (`tasklog::store::HistoryEvent`'s JSON),
/// read back so that the direct path and a server's answer print through one renderer.
#[derive(Debug, Deserialize)]
pub struct HistoryRow {
    /// LSN.
    pub lsn: u64,
    /// When.
    pub at: Timestamp,
    /// Event kind.
    pub kind: String,
    /// State before.
    #[serde(default)]
    pub from: Option<TaskState>,
    /// State after.
    #[serde(default)]
    pub to: Option<TaskState>,
    /// Who.
    #[serde(default)]
    pub actor: Option<String>,
    /// The event's fields.
    #[serde(default)]
    pub details: Value,
}

/// The rows of a history read from the store.
pub fn history_rows(events: &[tasklog::store::HistoryEvent]) -> anyhow::Result<Vec<HistoryRow>> {
    Ok(serde_json::from_value(serde_json::to_value(events)?)?)
}

/// The view of statistics read from the store (without runtime figures).
pub fn stats_view(stats: &tasklog::store::Stats) -> anyhow::Result<StatsView> {
    Ok(serde_json::from_value(serde_json::to_value(stats)?)?)
}

/// A task's history as a table.
pub fn history_table(out: &mut dyn Write, events: &[HistoryRow]) -> io::Result<()> {
    let mut t = Table::new(vec!["LSN", "AT", "KIND", "TRANSITION", "ACTOR", "DETAILS"]);
    for e in events {
        let state = |s: Option<TaskState>| s.map_or("-".to_string(), |s| s.to_string());
        let transition = if e.from == e.to {
            state(e.to)
        } else {
            format!("{} -> {}", state(e.from), state(e.to))
        };
        t.row(vec![
            e.lsn.to_string(),
            short_time(e.at),
            e.kind.clone(),
            transition,
            opt(e.actor.as_deref()),
            clip(&compact_json(&without_nulls(&e.details)), 70),
        ]);
    }
    t.write(out)
}

/// `stats --json` (`tasklog::store::Stats` plus a `runtime` object), read back so that the
/// direct path and a server's answer print through one renderer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatsView {
    /// Live tasks.
    pub total: usize,
    /// By state.
    pub by_state: BTreeMap<String, usize>,
    /// By role.
    pub by_role: BTreeMap<String, usize>,
    /// By provider.
    pub by_provider: BTreeMap<String, usize>,
    /// By a metadata key.
    pub by_key: Option<KeyCountsView>,
    /// By each of several metadata keys.
    #[serde(default)]
    pub by_keys: Vec<KeyCountsView>,
    /// Sum of attempts.
    pub attempts: u64,
    /// Completed tasks.
    pub successes: usize,
    /// Failures recorded.
    pub failures: u64,
    /// Removed tasks.
    pub removed: usize,
    /// Events in the audit trail.
    pub events: u64,
    /// The store's health.
    pub health: HealthView,
    /// The worker runtime's figures.
    pub runtime: Option<RuntimeView>,
    /// Schedules.
    pub scheduled: usize,
    /// Live tasks that are neither a schedule nor a schedule's run.
    pub one_time: usize,
    /// Runs created by schedules.
    pub total_runs: u64,
    /// Schedule runs completed.
    pub total_successes: u64,
    /// Schedule runs failed.
    pub total_failures: u64,
}

/// Counts by one metadata key.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyCountsView {
    /// The key.
    pub key: String,
    /// Value -> count.
    pub counts: BTreeMap<String, usize>,
}

/// `tasklog::store::Health`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HealthView {
    /// Bytes in log segments.
    pub log_bytes: u64,
    /// Log segments.
    pub log_segments: usize,
    /// First LSN.
    pub first_lsn: u64,
    /// Last LSN.
    pub last_lsn: u64,
    /// Durable LSN.
    pub durable_lsn: u64,
    /// Snapshots.
    pub snapshots: usize,
    /// Newest snapshot's LSN.
    pub snapshot_lsn: u64,
    /// Its age.
    pub snapshot_age_secs: Option<f64>,
    /// Records since.
    pub events_since_snapshot: u64,
    /// fdatasync calls.
    pub fsyncs: u64,
    /// p50.
    pub fsync_p50_us: u64,
    /// p90.
    pub fsync_p90_us: u64,
    /// p99.
    pub fsync_p99_us: u64,
    /// max.
    pub fsync_max_us: u64,
}

/// `tasklog::runtime::RuntimeHealth`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RuntimeView {
    /// Queued by kind, then priority.
    pub queue_depth: BTreeMap<String, BTreeMap<String, usize>>,
    /// Running.
    pub running: usize,
    /// Stuck.
    pub stuck: u64,
    /// Retries.
    pub retries: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Success rate.
    pub success_rate: f64,
    /// p50 ms.
    pub run_ms_p50: f64,
    /// p90 ms.
    pub run_ms_p90: f64,
    /// p99 ms.
    pub run_ms_p99: f64,
}

fn counts_line(map: &BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statistics as a readable block.
pub fn stats_block(out: &mut dyn Write, s: &StatsView) -> io::Result<()> {
    writeln!(
        out,
        "tasks: {} live, {} removed, {} events in the audit trail",
        s.total, s.removed, s.events
    )?;
    writeln!(out, "  by state:    {}", counts_line(&s.by_state))?;
    writeln!(out, "  by role:     {}", counts_line(&s.by_role))?;
    writeln!(out, "  by provider: {}", counts_line(&s.by_provider))?;
    if s.by_keys.is_empty()
        && let Some(k) = &s.by_key
    {
        writeln!(out, "  by {}: {}", k.key, counts_line(&k.counts))?;
    }
    for k in &s.by_keys {
        writeln!(out, "  by {}: {}", k.key, counts_line(&k.counts))?;
    }
    writeln!(
        out,
        "  attempts {}, successes {}, failures {}",
        s.attempts, s.successes, s.failures
    )?;
    if s.scheduled > 0 {
        writeln!(
            out,
            "  schedules {}, one-time tasks {}; schedule runs {}, successes {}, failures {}",
            s.scheduled, s.one_time, s.total_runs, s.total_successes, s.total_failures
        )?;
    }
    let h = &s.health;
    writeln!(out, "health:")?;
    writeln!(
        out,
        "  log:        {} segment(s), {}, LSN {}..{} (durable {})",
        h.log_segments,
        bytes(h.log_bytes),
        h.first_lsn,
        h.last_lsn,
        h.durable_lsn
    )?;
    // NOTE: LSNs number every log record, not only events: each clean close of a writing
    // session appends a "session closed" record. Without this line the missing numbers in
    // `history` look like lost events.
    let others = h.last_lsn.saturating_sub(s.events);
    if others > 0 {
        writeln!(
            out,
            "              {others} of those LSNs are \"session closed\" records (one per clean close), not events: that is why LSNs in `history` skip numbers"
        )?;
    }
    let age = h
        .snapshot_age_secs
        .map_or(String::new(), |a| format!(", {a:.0} s old"));
    writeln!(
        out,
        "  snapshots:  {} (newest at LSN {}{age}); {} event(s) since",
        h.snapshots, h.snapshot_lsn, h.events_since_snapshot
    )?;
    if h.fsyncs > 0 {
        writeln!(
            out,
            "  fsync:      {} call(s), p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
            h.fsyncs, h.fsync_p50_us, h.fsync_p90_us, h.fsync_p99_us, h.fsync_max_us
        )?;
    }
    if let Some(r) = &s.runtime {
        runtime_block(out, r)?;
    }
    Ok(())
}

/// The worker runtime's figures, when a runtime has used the store.
fn runtime_block(out: &mut dyn Write, r: &RuntimeView) -> io::Result<()> {
    let queued: usize = r.queue_depth.values().flat_map(|m| m.values()).sum();
    let used =
        !r.queue_depth.is_empty() || r.running as u64 + r.succeeded + r.failed + r.cancelled > 0;
    if !used {
        return Ok(());
    }
    writeln!(
        out,
        "runtime:\n  queued:     {}\n  running:    {} ({} stuck)\n  finished:   {} succeeded, {} failed, {} cancelled (success rate {:.0} %)\n  retries:    {}\n  run time:   p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms",
        queued,
        r.running,
        r.stuck,
        r.succeeded,
        r.failed,
        r.cancelled,
        r.success_rate * 100.0,
        r.retries,
        r.run_ms_p50,
        r.run_ms_p90,
        r.run_ms_p99
    )
}

/// Human byte count.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_clip() {
        let mut t = Table::new(vec!["A", "BB"]);
        t.row(vec!["xyz".into(), "1".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A    BB\nxyz  1\n");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
