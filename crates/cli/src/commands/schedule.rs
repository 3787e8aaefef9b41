//! `tasklog schedule add|list|pause|resume|remove|runs`: recurring tasks. Directly (the store
//! opened as a one-shot writer or reader) or through a server (`/v1/schedules`).
//!
//! NOTE: the CLI only defines and inspects schedules. Firing is done by whatever runs the
//! store's work: `tasklog serve`, or an application's runtime (`Runtime::start_scheduler`).

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tasklog::Task;
use tasklog::runtime::schedule::{
    self, CatchUp, Overlap, ScheduleSpec, ScheduleView, TaskTemplate,
};
use tasklog::task::Timestamp;

use super::{Ctx, close};
use crate::args::{parse_json, parse_meta};
use crate::client::{Query, segment};
use crate::output::{self, Table};

/// Runs of one schedule shown by default.
const RUNS_LIMIT_DEFAULT: usize = 20;

/// `tasklog schedule ...`.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule (a cron expression with a time zone, or a fixed interval); prints
    /// its name and next fire time.
    Add(Box<AddArgs>),
    /// List the schedules with their next fire times and run counts.
    List {
        /// Print the schedules as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a schedule from firing (until resumed).
    Pause {
        /// The schedule's name.
        name: String,
        /// Print the schedule as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a paused schedule fire again (fire times passed while paused are not caught up).
    Resume {
        /// The schedule's name.
        name: String,
        /// Print the schedule as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule: it fires no more; its history and its runs stay.
    Remove {
        /// The schedule's name.
        name: String,
    },
    /// A schedule's runs, newest fire time first, with their outcomes.
    Runs {
        /// The schedule's name.
        name: String,
        /// At most this many.
        #[arg(long, default_value_t = RUNS_LIMIT_DEFAULT)]
        limit: usize,
        /// Print the runs as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Overlap policy on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OverlapArg {
    /// Drop a firing while a run is active.
    Skip,
    /// Hold back the latest firing until the active run ends.
    QueueOne,
    /// Let runs overlap.
    Allow,
}

/// Catch-up policy on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CatchUpArg {
    /// Drop missed firings.
    None,
    /// Run the latest missed firing only.
    Latest,
    /// Run the latest --catch-up-max missed firings.
    All,
}

/// `schedule add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Unique name (A-Z a-z 0-9 . _ -).
    pub name: String,
    /// Cron expression (5 fields, or 6 with seconds first), e.g. "0 9 * * 1-5".
    #[arg(long, conflicts_with = "every", required_unless_present = "every")]
    pub cron: Option<String>,
    /// IANA time zone of the cron expression (default UTC).
    #[arg(long = "tz", value_name = "ZONE", requires = "cron")]
    pub timezone: Option<String>,
    /// Fixed interval instead of cron, e.g. 90s, 15m, 1h, 1day.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub every: Option<std::time::Duration>,
    /// Title of each run (default: the name).
    #[arg(long)]
    pub title: Option<String>,
    /// Description of each run.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Role of each run.
    #[arg(long)]
    pub role: Option<String>,
    /// A tag of each run (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A metadata entry of each run, KEY=VALUE (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, Value)>,
    /// Priority of each run, 0 to 10.
    #[arg(long, default_value_t = 0)]
    pub priority: u8,
    /// The runtime kind (handler) that runs each run.
    #[arg(long)]
    pub kind: Option<String>,
    /// The runtime input of each run (JSON).
    #[arg(long, value_parser = parse_json, requires = "kind")]
    pub input: Option<Value>,
    /// While a run is still active.
    #[arg(long, value_enum, default_value = "skip")]
    pub overlap: OverlapArg,
    /// Firings missed while nothing fired schedules.
    #[arg(long, value_enum, default_value = "latest")]
    pub catch_up: CatchUpArg,
    /// With --catch-up all: at most this many missed firings (1 to 1000, default 10).
    #[arg(long)]
    pub catch_up_max: Option<u32>,
    /// Random delay of each run below this, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub jitter: Option<std::time::Duration>,
    /// No firing before this time (RFC 3339, YYYY-MM-DD or epoch seconds).
    #[arg(long, value_name = "TIME", value_parser = Timestamp::parse)]
    pub start: Option<Timestamp>,
    /// No firing after this time.
    #[arg(long, value_name = "TIME", value_parser = Timestamp::parse)]
    pub end: Option<Timestamp>,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Print the schedule as JSON.
    #[arg(long)]
    pub json: bool,
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AddArgs {
    fn spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            name: self.name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            every_ms: self.every.map(millis),
            task: TaskTemplate {
                title: self.title.clone(),
                description: self.description.clone(),
                role: self.role.clone(),
                tags: self.tags.clone(),
                metadata: self.meta.iter().cloned().collect(),
                priority: self.priority,
                kind: self.kind.clone(),
                input: self.input.clone(),
                ..TaskTemplate::default()
            },
            overlap: match self.overlap {
                OverlapArg::Skip => Overlap::Skip,
                OverlapArg::QueueOne => Overlap::QueueOne,
                OverlapArg::Allow => Overlap::Allow,
            },
            catch_up: match self.catch_up {
                CatchUpArg::None => CatchUp::None,
                CatchUpArg::Latest => CatchUp::Latest,
                CatchUpArg::All => CatchUp::All,
            },
            catch_up_max: self.catch_up_max,
            jitter_ms: self.jitter.map_or(0, millis),
            start_at: self.start,
            end_at: self.end,
            paused: self.paused,
        }
    }
}

/// Runs one `schedule` subcommand.
pub fn run(ctx: &Ctx, out: &mut dyn Write, command: ScheduleCommand) -> anyhow::Result<()> {
    match command {
        ScheduleCommand::Add(a) => {
            let spec = a.spec();
            let view: ScheduleView = match &ctx.remote {
                Some(r) => r.post(
                    "/v1/schedules",
                    &Query::new(),
                    &serde_json::to_value(&spec)?,
                )?,
                None => {
                    let store = ctx.open_write()?;
                    let v = schedule::add(&store, &spec, Timestamp::now());
                    close(store)?;
                    v?
                }
            };
            print_one(out, &view, a.json)
        }
        ScheduleCommand::List { json } => {
            let views: Vec<ScheduleView> = match &ctx.remote {
                Some(r) => {
                    let v: Value = r.get("/v1/schedules", &Query::new())?;
                    serde_json::from_value(v["schedules"].clone())?
                }
                None => {
                    let store = ctx.open_read()?;
                    schedule::list(&store, Timestamp::now())?
                }
            };
            if json {
                return output::json(out, &json!({ "schedules": views }));
            }
            table(out, &views)
        }
        ScheduleCommand::Pause { name, json } => toggle(ctx, out, &name, true, json),
        ScheduleCommand::Resume { name, json } => toggle(ctx, out, &name, false, json),
        ScheduleCommand::Remove { name } => {
            match &ctx.remote {
                Some(r) => {
                    let _: Value = r.delete(&format!("/v1/schedules/{}", segment(&name)))?;
                }
                None => {
                    let store = ctx.open_write()?;
                    let done = schedule::remove(&store, &name);
                    close(store)?;
                    done?;
                }
            }
            writeln!(out, "{name}")?;
            Ok(())
        }
        ScheduleCommand::Runs { name, limit, json } => {
            let runs: Vec<Task> = match &ctx.remote {
                Some(r) => {
                    let q = vec![("limit", limit.to_string())];
                    let v: Value = r.get(&format!("/v1/schedules/{}/runs", segment(&name)), &q)?;
                    serde_json::from_value(v["runs"].clone())?
                }
                None => {
                    let store = ctx.open_read()?;
                    schedule::runs(&store, &name, limit)?
                }
            };
            if json {
                return output::json(out, &json!({ "runs": runs }));
            }
            runs_table(out, &runs)
        }
    }
}

fn toggle(
    ctx: &Ctx,
    out: &mut dyn Write,
    name: &str,
    pause: bool,
    json: bool,
) -> anyhow::Result<()> {
    let action = if pause { "pause" } else { "resume" };
    let view: ScheduleView = match &ctx.remote {
        Some(r) => r.post(
            &format!("/v1/schedules/{}/{action}", segment(name)),
            &Query::new(),
            &json!({}),
        )?,
        None => {
            let store = ctx.open_write()?;
            let v = if pause {
                schedule::pause(&store, name, Timestamp::now())
            } else {
                schedule::resume(&store, name, Timestamp::now())
            };
            close(store)?;
            v?
        }
    };
    print_one(out, &view, json)
}

fn print_one(out: &mut dyn Write, v: &ScheduleView, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(out, v);
    }
    let next = v
        .next_fire_at
        .map_or_else(|| "never".to_string(), |t| t.to_rfc3339());
    let state = if v.paused { " (paused)" } else { "" };
    writeln!(out, "{}{state}: next fire at {next}", v.name)?;
    Ok(())
}

fn when(v: &ScheduleView) -> String {
    let d = &v.definition;
    match (&d.cron, d.every_ms) {
        (Some(c), _) => format!("{c} ({})", d.timezone.as_deref().unwrap_or("UTC")),
        (None, Some(ms)) => format!(
            "every {}",
            humantime::format_duration(std::time::Duration::from_millis(ms))
        ),
        (None, None) => "?".into(),
    }
}

fn table(out: &mut dyn Write, views: &[ScheduleView]) -> anyhow::Result<()> {
    if views.is_empty() {
        writeln!(out, "no schedules")?;
        return Ok(());
    }
    let mut t = Table::new(vec![
        "NAME", "WHEN", "NEXT", "LAST", "RUNS", "OK", "FAILED", "SKIPPED", "STATE",
    ]);
    for v in views {
        let c = v.counts;
        t.row(vec![
            v.name.clone(),
            when(v),
            v.next_fire_at
                .map_or_else(|| "-".into(), |t| t.to_rfc3339()),
            v.last_fire_at
                .map_or_else(|| "-".into(), |t| t.to_rfc3339()),
            c.runs.to_string(),
            c.successes.to_string(),
            c.failures.to_string(),
            c.skipped.to_string(),
            if v.paused { "paused" } else { "active" }.into(),
        ]);
    }
    t.write(out)?;
    Ok(())
}

fn runs_table(out: &mut dyn Write, runs: &[Task]) -> anyhow::Result<()> {
    if runs.is_empty() {
        writeln!(out, "no runs")?;
        return Ok(());
    }
    let mut t = Table::new(vec!["ID", "STATE", "ATTEMPT", "ERROR"]);
    for r in runs {
        t.row(vec![
            r.id.clone(),
            r.state.to_string(),
            r.attempt.to_string(),
            output::clip(r.last_error.as_deref().unwrap_or(""), 60),
        ]);
    }
    t.write(out)?;
    Ok(())
}
