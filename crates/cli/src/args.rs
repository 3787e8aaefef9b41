//! The command line, as clap derive structs. Names, flags and defaults here are a contract
//! relied on by scripts (issue #6): change them only compatibly.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use tasklog::TaskState;
use tasklog::task::{OutputKind, Timestamp};

/// The default store directory, relative to the current directory.
pub const DEFAULT_DIR: &str = "tasklog-data";

const AFTER_HELP: &str = "\
Store directory: --dir DIR, else $TASKLOG_DIR, else ./tasklog-data. Write commands create it;
read commands (get, list, history, stats, export, verify, watch, import --dry-run) never create
or write a store.

Server: while `tasklog serve` runs on a store it records where it listens in <dir>/server.json,
and the task, read, transfer and maintenance commands on that directory (and any command given
--remote URL or $TASKLOG_REMOTE) send their request to it: same output, same exit codes. A
record of a dead server is ignored. verify, repair, backup, restore, stress, demo and
completions always work on the directory itself. One-shot commands never apply the
interrupted-work policy on behalf of another process: `tasklog recover` (or a server, or the
application's runtime) does.

Exit codes:
  0  success
  1  operation error: task not found, invalid transition, conflict, invalid input, I/O
  2  usage error: unknown command or flag, a value that does not parse
  3  corruption: `verify` found damage, or the store refused to open a damaged log
  4  the store is locked by another process (another writer has it open)
  5  `serve --jetstream`: this server stopped writing (lease lost to another, or its log
     refused its appends); restart it to serve as a standby

Environment: TASKLOG_DIR (store directory), TASKLOG_REMOTE (server URL), TASKLOG_TOKEN (bearer
token for serve and for the client, unless --token-file), TASKLOG_ACTOR (--actor), RUST_LOG (log
filter, default warn), NO_COLOR (no colors in progress bars).";

/// Durable task state with a complete audit trail.
#[derive(Debug, Parser)]
#[command(name = "tasklog", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The store directory.
    #[arg(long, global = true, env = "TASKLOG_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// No progress bars and no informational messages on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Send the command to the `tasklog serve` at this URL (e.g. http://127.0.0.1:7878)
    /// instead of the store directory.
    #[arg(long, global = true, env = "TASKLOG_REMOTE", value_name = "URL")]
    pub remote: Option<String>,

    /// How long a command that writes waits for another writer (a command, an application, a
    /// server starting) to release the store before it fails with exit 4, naming the process
    /// holding it. 0: fail at once.
    #[arg(
        long,
        global = true,
        env = "TASKLOG_WAIT",
        value_name = "SECS",
        default_value = "5",
        value_parser = parse_wait
    )]
    pub wait: std::time::Duration,

    /// A file holding the bearer token (first line): required by `serve` on a non-loopback
    /// address, sent by the client to a server that needs it. Else $TASKLOG_TOKEN.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Who makes the change, recorded in the task's history by the commands that change a
    /// task (submit, start, progress, checkpoint, output, complete, fail, cancel, retry).
    /// Else $TASKLOG_ACTOR; else none (a server records its default).
    #[arg(long, global = true, env = "TASKLOG_ACTOR", value_name = "NAME")]
    pub actor: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The store directory after applying the defaults.
    pub fn store_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a task; prints its id alone on a line.
    Submit(SubmitArgs),
    /// Move a pending task to running.
    Start {
        /// The task id.
        id: String,
    },
    /// Report progress of a running task.
    Progress {
        /// The task id.
        id: String,
        /// 0 to 100.
        #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
        /// The current step's name.
        #[arg(long)]
        step: Option<String>,
        /// The current step's text.
        #[arg(long)]
        message: Option<String>,
    },
    /// Take a checkpoint of a running task.
    Checkpoint {
        /// The task id.
        id: String,
        /// The checkpoint's name.
        name: String,
        /// Recoverable data, as JSON (default null).
        #[arg(long, value_parser = parse_json, value_name = "JSON")]
        data: Option<Value>,
    },
    /// Record an output entry (stdout, stderr, log, artifact, commit).
    Output {
        /// The task id.
        id: String,
        /// stdout, stderr, log, artifact or commit.
        #[arg(value_parser = parse_output_kind)]
        kind: OutputKind,
        /// The content.
        content: String,
    },
    /// Move a running task to completed.
    Complete {
        /// The task id.
        id: String,
        /// The result, as JSON.
        #[arg(long, value_parser = parse_json, value_name = "JSON")]
        result: Option<Value>,
    },
    /// Move a running task to failed.
    Fail {
        /// The task id.
        id: String,
        /// The error text.
        #[arg(long)]
        error: String,
    },
    /// Cancel a pending or running task.
    Cancel {
        /// The task id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Queue a failed, cancelled or discarded task again (attempt + 1).
    Retry {
        /// The task id.
        id: String,
    },
    /// Show one task.
    Get {
        /// The task id.
        id: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List tasks.
    List(ListArgs),
    /// Show every event of a task.
    History {
        /// The task id.
        id: String,
        /// Print a JSON array of events.
        #[arg(long)]
        json: bool,
    },
    /// Counts by state, role, provider (or a metadata key) and the store's health.
    Stats {
        /// Also count by this metadata key (repeatable: by each key, `by_keys` in the JSON).
        #[arg(long, value_name = "KEY")]
        by: Vec<String>,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recurring tasks: add, list, pause, resume, remove a schedule, and list its runs.
    Schedule {
        /// What to do.
        #[command(subcommand)]
        command: crate::commands::schedule::ScheduleCommand,
    },
    /// Export tasks (with their history) to JSON or CSV.
    Export(ExportArgs),
    /// Import tasks from a JSON export.
    Import(ImportArgs),
    /// Remove terminal tasks that finished more than DAYS days ago (their history stays).
    Cleanup {
        /// Age in days (fractions allowed; default 30).
        #[arg(long, value_name = "DAYS", value_parser = parse_days)]
        older_than: Option<f64>,
        /// Only tasks in these terminal states (comma-separated; default: completed, failed
        /// and cancelled). Seed 000's rule: `--state completed,failed --by last-run`.
        #[arg(long = "state", value_name = "S[,S...]", value_delimiter = ',', value_parser = StateParser)]
        states: Vec<TaskState>,
        /// The time compared with the age: when the task finished, or when it last ran.
        #[arg(long, value_enum, default_value = "finished")]
        by: CleanupByArg,
    },
    /// Write a snapshot now.
    Snapshot,
    /// Write a snapshot and remove the log segments and snapshots it makes unnecessary.
    Compact,
    /// Check every segment, snapshot and checksum, the LSN sequence and the state machine.
    Verify {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cut a damaged log at the last good record (dry run unless --yes).
    Repair {
        /// Really cut (after copying the damaged bytes to quarantine/).
        #[arg(long)]
        yes: bool,
    },
    /// Write a consistent, verified, fsynced copy of the store to DEST, a new directory
    /// (works beside a running server: the copy is the store's durable state when it starts).
    /// With --keep N, DEST holds rotated backups (DEST/backup-<UTC time>): the newest N are
    /// kept. The copy is itself a store; `tasklog restore` copies it back.
    Backup {
        /// The backup directory (new), or with --keep the directory of rotated backups.
        dest: PathBuf,
        /// Rotate: write DEST/backup-<UTC time> and keep the newest N complete backups.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        keep: Option<u64>,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore the backup BACKUP into DIR, a new store directory (checked before and after).
    Restore {
        /// A backup directory written by `tasklog backup`.
        backup: PathBuf,
        /// The new store directory.
        target: PathBuf,
        /// Print what was restored as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print committed events as they happen, until interrupted.
    Watch {
        /// Start at this LSN (default: only new events).
        #[arg(long, value_name = "LSN")]
        from: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Apply the interrupted-work policy now: tasks left running by a process that died, and
    /// expired leases, are marked failed (or requeued with --requeue).
    Recover {
        /// Put them back to pending (keeping their checkpoint) instead of marking them failed.
        #[arg(long)]
        requeue: bool,
        /// Print the ids as JSON: {"recovered": [...], "policy": "..."}.
        #[arg(long)]
        json: bool,
    },
    /// Serve the store over HTTP until SIGINT or SIGTERM (see docs/api.md).
    Serve(ServeArgs),
    /// Concurrent load: prints `ack <task-id> <lsn>` for every durable event.
    Stress(StressArgs),
    /// A guided tour: workers, failures, retries, a crash and its recovery, an export.
    Demo,
    /// Pause a kind (`runtime.kind`): no task of it starts until `resume`; running ones
    /// finish. Durable; holds for every worker of the store.
    Pause {
        /// The kind.
        #[arg(value_hint = clap::ValueHint::Other)]
        kind: String,
    },
    /// Resume a paused kind.
    Resume {
        /// The kind.
        #[arg(value_hint = clap::ValueHint::Other)]
        kind: String,
    },
    /// Show the kinds that have rules (pause, concurrency and rate limits).
    Kinds {
        /// Print `{"kinds": {...}}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// (internal) The kinds the store knows, one per line, for the completion scripts
    /// (`pause`/`resume`). Reads the store read-only; prints nothing when there is none.
    #[command(hide = true, name = "complete-kinds")]
    CompleteKinds,
    /// (internal) The child process the demo kills to show crash recovery.
    #[command(hide = true)]
    DemoCrashChild,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Short title.
    #[arg(long)]
    pub title: String,
    /// Longer description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// The role (agent or team) the task belongs to.
    #[arg(long)]
    pub role: Option<String>,
    /// Provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Model.
    #[arg(long)]
    pub model: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// A metadata entry KEY=VALUE (repeatable; VALUE is JSON if it parses, else a string).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, Value)>,
    /// The task id (generated when absent).
    #[arg(long)]
    pub id: Option<String>,
    /// Idempotency key: a second submit with the same key returns the first task.
    #[arg(long)]
    pub request_id: Option<String>,
    /// Hand the task to no worker before this time (RFC 3339, YYYY-MM-DD or epoch seconds).
    #[arg(long, value_name = "TIME", value_parser = Timestamp::parse, conflicts_with = "delay")]
    pub run_at: Option<Timestamp>,
    /// Hand the task to no worker before this long from now, e.g. 90s, 15m, 2h.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delay: Option<std::time::Duration>,
    /// Priority, 0 to 10 (higher runs first; default 0).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    pub priority: Option<u8>,
}

/// Filters shared by `list` and `export`.
#[derive(Debug, Args, Clone, Default)]
pub struct FilterArgs {
    /// Any of these states (comma-separated).
    #[arg(long = "state", value_name = "S[,S...]", value_delimiter = ',', value_parser = StateParser)]
    pub states: Vec<TaskState>,
    /// Exactly this role.
    #[arg(long)]
    pub role: Option<String>,
    /// Exactly this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Exactly this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Has this tag (repeatable: all of them).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Metadata KEY=VALUE (repeatable: all of them).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, Value)>,
    /// Case-insensitive text in the title or description.
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Created at or after (RFC 3339, YYYY-MM-DD or epoch seconds).
    #[arg(long, value_name = "TIME", value_parser = Timestamp::parse)]
    pub since: Option<Timestamp>,
    /// Created before.
    #[arg(long, value_name = "TIME", value_parser = Timestamp::parse)]
    pub until: Option<Timestamp>,
}

/// `cleanup --by`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum CleanupByArg {
    /// When the task finished.
    #[default]
    Finished,
    /// When it last ran (its last attempt's start).
    LastRun,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum SortArg {
    /// Creation time.
    #[default]
    Created,
    /// Last update time.
    Updated,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Sort by creation or update time.
    #[arg(long, value_enum, default_value_t = SortArg::Created)]
    pub sort: SortArg,
    /// Newest first.
    #[arg(long)]
    pub desc: bool,
    /// At most N tasks.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Skip the first N matches.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub offset: usize,
    /// Print a JSON array of tasks.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Full tasks with their history.
    Json,
    /// One row per task (no history).
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The output file; `-` for stdout (default: tasks_export_YYYYMMDD_HHMMSS.<format>).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// json or csv.
    #[arg(long, value_enum, default_value = "json")]
    pub format: ExportFormat,
    /// Leave the event history out of a JSON export.
    #[arg(long)]
    pub no_history: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportMode {
    /// Add to what is in the store.
    Merge,
    /// Make the store hold exactly what the file holds.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnConflict {
    /// Keep the task in the store.
    Skip,
    /// Replace it with the file's.
    Overwrite,
    /// Stop with an error (nothing is written).
    Fail,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The JSON file (`-` for stdin).
    pub file: PathBuf,
    /// merge or replace.
    #[arg(long, value_enum, default_value = "merge")]
    pub mode: ImportMode,
    /// What to do with an id already in the store.
    #[arg(long, value_enum, default_value = "skip")]
    pub on_conflict: OnConflict,
    /// Check and count, write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The default address of `tasklog serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the chosen one is printed). A
    /// non-loopback address needs a token (--token-file or TASKLOG_TOKEN).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: String,
    /// The only directory whose files the seed endpoints' server-side `path`s may name
    /// (export and import); without it such requests are refused.
    #[arg(long, value_name = "DIR")]
    pub files_dir: Option<PathBuf>,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 32)))]
    pub max_body_bytes: u64,
    /// Largest page a listing returns (a larger `limit` is refused).
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_page_size: u64,
    /// Seconds a request may take before it is answered 503 (event streams and claims'
    /// long polls excepted).
    #[arg(long, default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Most Server-Sent Events subscribers at once (503 beyond).
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_sse_subscribers: u64,
    /// Longest long poll a worker's claim may wait, in milliseconds (longer waits are cut).
    #[arg(long, default_value_t = 60_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub max_claim_wait_ms: u64,
    /// Take an online backup this often (e.g. 90s, 30m, 24h, 7d) into --backup-dir, rotated
    /// (DIR/backup-<UTC time>). The first one is taken one period after the start.
    #[arg(long, value_name = "PERIOD", value_parser = parse_period, requires = "backup_dir")]
    pub backup_every: Option<std::time::Duration>,
    /// Complete scheduled backups to keep, newest first.
    #[arg(long, default_value_t = 7, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub backup_keep: u64,
    /// The directory of scheduled backups.
    #[arg(long, value_name = "DIR", requires = "backup_every")]
    pub backup_dir: Option<PathBuf>,
    /// Share one store among several servers through a NATS JetStream cluster (its server
    /// URLs, comma-separated): the log lives in the stream, one server holds the writer's
    /// lease and the others answer reads from a replica and hand the rest to it until they
    /// take over (docs/jetstream.md).
    /// Needs a tasklog built with the `jetstream` feature.
    #[arg(long, value_name = "URLS", requires = "stream")]
    pub jetstream: Option<String>,
    /// The JetStream stream that holds the store's log (with --jetstream).
    #[arg(long, value_name = "NAME", requires = "jetstream")]
    pub stream: Option<String>,
    /// Create the stream and the lease bucket when missing (file storage, --replicas
    /// replicas).
    #[arg(long, requires = "jetstream")]
    pub create_stream: bool,
    /// Replicas of the stream and the lease bucket when --create-stream creates them.
    #[arg(long, default_value_t = 3, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=5))]
    pub replicas: u64,
    /// The writer's lease (e.g. 10s, 1500ms): a writer that cannot renew it for this long is
    /// replaced by another server.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_lease)]
    pub lease: std::time::Duration,
    /// The base URL other servers send clients to while this one writes (default: the
    /// address listened on; give it when clients reach this machine by another name).
    #[arg(long, value_name = "URL", requires = "jetstream", value_parser = parse_advertise)]
    pub advertise: Option<String>,
    /// This server's id in the lease (default: its pid and a random number; unique per
    /// process).
    #[arg(long, value_name = "ID", requires = "jetstream")]
    pub node_id: Option<String>,
    /// What a standby does with a request its replica does not answer: forward it to the
    /// writer and pass the answer back (any client works, a browser included), or redirect
    /// the client to the writer (307).
    #[arg(long, value_enum, default_value_t = StandbyHandoff::Forward, value_name = "HOW",
          requires = "jetstream")]
    pub standby_handoff: StandbyHandoff,
}

/// `serve --standby-handoff`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StandbyHandoff {
    /// Forward the request to the writer; stream its answer back.
    #[default]
    Forward,
    /// Answer 307 with the writer's URL.
    Redirect,
}

/// Parses `--lease`: a duration between 300 ms and 1 h.
fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let lease =
        humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (e.g. 10s, 1500ms)"))?;
    if !(std::time::Duration::from_millis(300)..=std::time::Duration::from_secs(3600))
        .contains(&lease)
    {
        return Err(format!("{text:?}: a lease is between 300ms and 1h"));
    }
    Ok(lease)
}

/// Parses `--advertise`: an http(s) base URL of at most 1024 bytes.
fn parse_advertise(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 1024
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(format!(
            "{text:?}: expected an http:// or https:// base URL (at most 1024 bytes)"
        ));
    }
    Ok(url.to_owned())
}

/// Parses a period: a whole number with a unit, `s`, `m`, `h` or `d` (at least 1 s, at most
/// 366 days).
pub fn parse_period(text: &str) -> Result<std::time::Duration, String> {
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: give a unit, e.g. 90s, 30m, 24h, 7d"))?;
    let (n, unit) = text.split_at(unit_at);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number then s, m, h or d"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?}: expected a whole number then s, m, h or d"))?;
    if !(1..=366 * 86_400).contains(&secs) {
        return Err(format!("{text:?}: a period is between 1s and 366d"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Debug, Args)]
pub struct StressArgs {
    /// Concurrent writer threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub writers: u32,
    /// Tasks in total, shared out among the writers.
    #[arg(long, default_value_t = 100)]
    pub tasks: u64,
    /// Events per task: submit, start, progress x (K-3), then complete, fail or cancel.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(3..=10_000))]
    pub events_per_task: u32,
    /// Bytes of filler in each task's metadata.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Write into a store that already holds tasks (stress's tasks are added beside them).
    /// Without it, stress refuses a store that is not empty (exit 1), so that a load test
    /// is not run into real data by mistake.
    #[arg(long, visible_alias = "yes")]
    pub force: bool,
}

/// Parses `KEY=VALUE`; VALUE is JSON if it parses, else a string.
pub fn parse_meta(text: &str) -> Result<(String, Value), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    if k.is_empty() {
        return Err(format!("empty key in {text:?}"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    // The store's limits, checked here too so that the message names the argument. A metadata
    // value sits one level down in the task's metadata object.
    let entry = Value::Object([(k.to_string(), value)].into_iter().collect());
    tasklog::task::limits::check_json(&entry).map_err(|e| format!("--meta {k}: {e}"))?;
    let Value::Object(entry) = entry else {
        unreachable!("built as an object above")
    };
    Ok(entry.into_iter().next().expect("built with one entry"))
}

/// Parses a JSON argument (`--result`, `--data`), held to the store's limits.
pub fn parse_json(text: &str) -> Result<Value, String> {
    let value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    tasklog::task::limits::check_json(&value)?;
    Ok(value)
}

fn parse_state(text: &str) -> Result<TaskState, String> {
    text.trim().parse()
}

/// `--state`: parses like [`parse_state`] (any case, spaces trimmed) and tells clap the state
/// names, so that shell completions offer them (and never file names) and `--help` lists them.
#[derive(Clone, Copy, Debug)]
struct StateParser;

impl clap::builder::TypedValueParser for StateParser {
    type Value = TaskState;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<TaskState, clap::Error> {
        let name = arg.map_or_else(|| "--state".to_string(), ToString::to_string);
        let text = value.to_string_lossy();
        parse_state(&text).map_err(|why| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid value '{text}' for '{name}': {why}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            TaskState::ALL
                .into_iter()
                .map(|s| clap::builder::PossibleValue::new(s.as_str())),
        ))
    }
}

fn parse_output_kind(text: &str) -> Result<OutputKind, String> {
    text.parse()
}

fn parse_days(text: &str) -> Result<f64, String> {
    let d: f64 = text
        .parse()
        .map_err(|_| format!("expected a number of days, got {text:?}"))?;
    if !(d.is_finite() && d >= 0.0) {
        return Err(format!("days must be zero or more, got {text:?}"));
    }
    Ok(d)
}

/// `--wait SECS`: seconds, fractions allowed, at most a day.
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected seconds (e.g. 5 or 0.5), got {text:?}"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("expected 0 to 86400 seconds, got {text}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn meta_values_are_json_or_strings() {
        assert_eq!(parse_meta("n=5").unwrap().1, serde_json::json!(5));
        assert_eq!(parse_meta("s=abc").unwrap().1, serde_json::json!("abc"));
        assert_eq!(parse_meta("e=").unwrap().1, serde_json::json!(""));
        assert!(parse_meta("novalue").is_err());
    }
}
