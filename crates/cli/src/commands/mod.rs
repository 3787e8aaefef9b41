//! Command dispatch and the shared helpers: resolving and opening the store.

mod backup;
mod kinds;
mod maintain;
mod read;
mod recover;
mod repair;
pub mod schedule;
mod transfer;
mod verify;
mod watch;
mod write;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tasklog::store::InterruptedPolicy;
use tasklog::{Store, StoreOptions};

use crate::args::{Cli, Command};
use crate::client::Remote;
use crate::exit::{Exit, OPERATION, USAGE};
use crate::progress::Ui;

pub use transfer::export_to_path;
use write::Change;

/// What every command gets.
pub struct Ctx {
    /// The store directory (after defaults).
    pub dir: PathBuf,
    /// Progress bars and stderr notes.
    pub ui: Ui,
    /// The server the command talks to instead of opening the store: `--remote`, or the live
    /// server recorded in the store directory.
    pub remote: Option<Remote>,
    /// `--actor`: who makes the changes (recorded in histories).
    pub actor: Option<String>,
}

impl Ctx {
    /// Opens the store for writing, creating the directory when missing, as a one-shot
    /// command: interrupted work is left to its owner ([`open_write`]).
    pub fn open_write(&self) -> anyhow::Result<Store> {
        open_write(&self.dir)
    }

    /// Opens an existing store read-only (no lock, no recovery writes). A missing store is an
    /// error; it is not created.
    pub fn open_read(&self) -> anyhow::Result<Store> {
        open_read(&self.dir)
    }
}

/// Opens the store at `dir` for writing, as a one-shot command.
///
/// IMPORTANT: with [`InterruptedPolicy::Leave`]. A task left running by an application that
/// crashed belongs to that application (restarted, it may resume it from its checkpoint): a
/// one-shot command must not mark it failed on the application's behalf. Only the owner of the
/// work (`serve`, a runtime, the demo) or an explicit `tasklog recover` applies the policy.
///
/// NOTE: without segment preallocation. A CLI process appends a handful of records and exits,
/// so reserving a segment's space up front (and fsyncing it) on every open buys nothing, and
/// every later read-only open would read the reserved zeros back. `stress` keeps the library
/// default.
pub fn open_write(dir: &Path) -> anyhow::Result<Store> {
    open_write_with(
        dir,
        StoreOptions::new()
            .preallocate(false)
            .interrupted_policy(InterruptedPolicy::Leave),
    )
}

/// Opens the store at `dir` for writing as the owner of its work: the store's interrupted-work
/// policy (mark failed) applies at open. For the demo, which runs its own application.
pub fn open_owner(dir: &Path) -> anyhow::Result<Store> {
    open_write_with(dir, StoreOptions::new().preallocate(false))
}

/// `--wait`: how long every writer's open of this process waits for the lock. Set once, from
/// the arguments, before any command runs; a process-wide value because every command that
/// writes opens through [`open_write_with`] and all of them take the flag.
static LOCK_WAIT: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// The default of `--wait`, for callers that never parsed arguments (tests).
const LOCK_WAIT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the store at `dir` for writing with `options`, waiting for the lock as `--wait` says.
pub fn open_write_with(dir: &Path, options: StoreOptions) -> anyhow::Result<Store> {
    Store::open_with(dir, options.lock_timeout(lock_wait()))
        .with_context(|| format!("cannot open the store at {}", dir.display()))
}

/// How long a write open waits for another writer (`--wait`).
pub fn lock_wait() -> std::time::Duration {
    LOCK_WAIT.get().copied().unwrap_or(LOCK_WAIT_DEFAULT)
}

/// Opens the existing store at `dir` read-only. A damaged log is refused (exit 3), as a
/// writer's open would refuse it: the library's read-only open reports mid-log damage (and
/// reads again before believing it, since a writer may be mid-write).
pub fn open_read(dir: &Path) -> anyhow::Result<Store> {
    require_store(dir)?;
    let context = || format!("cannot open the store at {}", dir.display());
    Store::open_with(dir, StoreOptions::new().read_only(true)).with_context(context)
}

/// Fails with exit 1 unless `dir` holds a store.
pub fn require_store(dir: &Path) -> anyhow::Result<()> {
    let wal = tasklog::store::wal_dir(dir);
    let what = match std::fs::metadata(&wal) {
        Ok(m) if m.is_dir() => return Ok(()),
        // NOTE: a directory this user may not search is not "no store": say what is wrong.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Exit::new(
                OPERATION,
                format!(
                    "cannot read the store directory {}: permission denied ({e}); give this user access to it or run as its owner",
                    dir.display()
                ),
            )
            .into());
        }
        _ if dir.is_file() => "is a file, not a directory",
        _ if dir.exists() => "holds no tasklog store (no wal/ directory)",
        _ => "does not exist",
    };
    Err(Exit::new(
        OPERATION,
        format!(
            "the store directory {} {what}; pass --dir or set TASKLOG_DIR (write commands such as `submit` create a store)",
            dir.display()
        ),
    )
    .into())
}

/// Closes the store, reporting a failure to close (which may mean the last writes are lost).
pub fn close(store: Store) -> anyhow::Result<()> {
    store.close().context("closing the store")
}

/// [`close`] for a command that ends right after and opens no store again: once closed (log
/// flushed, lock released, snapshot thread joined), the store's memory is left to the
/// process's exit instead of being freed task by task. Freeing the state of 1,000,000 tasks
/// was about a twentieth of an import's CPU time (docs/benchmarks.md, "Import: the staged
/// history's bookkeeping, the exit, and the id table"). Not for `demo` or `stress`, which
/// reopen the directory (a handle left open to a snapshot file would hold its name on
/// Windows).
pub fn close_before_exit(store: Store) -> anyhow::Result<()> {
    store.close().context("closing the store")?;
    std::mem::forget(store);
    Ok(())
}

/// True for the commands that work on the store directory itself, never through a server:
/// `serve` (it is the server), `verify` (it reads the files; it works while a server runs),
/// `repair` (needs the store to itself), `stress` and `demo` (their own load and store),
/// `completions` and `complete-kinds` (a read-only open beside any writer).
fn local_only(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Serve(_) => "serve",
        Command::Verify { .. } => "verify",
        Command::Repair { .. } => "repair",
        Command::Backup { .. } => "backup",
        Command::Restore { .. } => "restore",
        Command::Stress(_) => "stress",
        Command::Demo | Command::DemoCrashChild => "demo",
        Command::Completions { .. } => "completions",
        Command::CompleteKinds => "complete-kinds",
        _ => return None,
    })
}

/// The server to talk to: `--remote URL`, else the live server recorded in the store
/// directory (a stale record is ignored), else None (open the store directly).
fn remote_for(cli: &Cli, dir: &Path) -> anyhow::Result<Option<Remote>> {
    if let Some(name) = local_only(&cli.command) {
        // NOTE: completion never fails because $TASKLOG_REMOTE is set in the shell.
        if cli.remote.is_some() && !matches!(name, "completions" | "complete-kinds") {
            return Err(Exit::new(
                USAGE,
                format!("`{name}` works on a store directory, not through --remote"),
            )
            .into());
        }
        return Ok(None);
    }
    let url = match &cli.remote {
        Some(url) => url.clone(),
        None => match crate::record::live(dir) {
            Some(rec) => {
                tracing::debug!(url = %rec.url, pid = rec.pid, "talking to the recorded server");
                rec.url
            }
            None => return Ok(None),
        },
    };
    let token = crate::serve::token(cli.token_file.as_deref())?;
    Ok(Some(Remote::new(&url, token)))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = LOCK_WAIT.set(cli.wait);
    let dir = cli.store_dir();
    let remote = remote_for(&cli, &dir)?;
    let ctx = Ctx {
        dir,
        ui: Ui::detect(cli.quiet),
        remote,
        actor: cli.actor.clone(),
    };
    // NOTE: not `stdout().lock()`: `stress` and `demo` write from several threads.
    let mut stdout = std::io::stdout();
    let out: &mut dyn Write = &mut stdout;
    match cli.command {
        Command::Submit(a) => write::submit(&ctx, out, a),
        Command::Start { id } => write::change(&ctx, out, &id, Change::Start),
        Command::Progress {
            id,
            percent,
            step,
            message,
        } => write::change(
            &ctx,
            out,
            &id,
            Change::Progress {
                percent,
                step,
                message,
            },
        ),
        Command::Checkpoint { id, name, data } => write::change(
            &ctx,
            out,
            &id,
            Change::Checkpoint {
                name,
                data: data.unwrap_or_default(),
            },
        ),
        Command::Output { id, kind, content } => {
            write::change(&ctx, out, &id, Change::Output { kind, content })
        }
        Command::Complete { id, result } => {
            write::change(&ctx, out, &id, Change::Complete { result })
        }
        Command::Fail { id, error } => write::change(&ctx, out, &id, Change::Fail { error }),
        Command::Cancel { id, reason } => write::change(&ctx, out, &id, Change::Cancel { reason }),
        Command::Retry { id } => write::change(&ctx, out, &id, Change::Retry),
        Command::Get { id, json } => read::get(&ctx, out, &id, json),
        Command::List(a) => read::list(&ctx, out, &a),
        Command::History { id, json } => read::history(&ctx, out, &id, json),
        Command::Stats { by, json } => read::stats(&ctx, out, &by, json),
        Command::Schedule { command } => schedule::run(&ctx, out, command),
        Command::Export(a) => transfer::export(&ctx, out, &a),
        Command::Import(a) => transfer::import(&ctx, out, &a),
        Command::Cleanup {
            older_than,
            states,
            by,
        } => maintain::cleanup(&ctx, out, older_than.unwrap_or(30.0), &states, by),
        Command::Snapshot => maintain::snapshot(&ctx, out),
        Command::Compact => maintain::compact(&ctx, out),
        Command::Verify { json } => verify::verify(&ctx, out, json),
        Command::Repair { yes } => repair::repair(&ctx, out, yes),
        Command::Backup { dest, keep, json } => backup::backup(&ctx, out, &dest, keep, json),
        Command::Restore {
            backup: from,
            target,
            json,
        } => backup::restore(out, &from, &target, json),
        Command::Watch { from, json } => watch::watch(&ctx, out, from, json),
        Command::Recover { requeue, json } => recover::recover(&ctx, out, requeue, json),
        Command::Pause { kind } => kinds::pause(&ctx, out, &kind, true),
        Command::Resume { kind } => kinds::pause(&ctx, out, &kind, false),
        Command::Kinds { json } => kinds::list(&ctx, out, json),
        Command::Serve(a) => {
            let token = crate::serve::token(cli.token_file.as_deref())?;
            crate::serve::run(&ctx, &a, token)
        }
        Command::Stress(a) => crate::stress::run(&ctx, &a),
        Command::Demo => crate::demo::run(&ctx),
        Command::DemoCrashChild => crate::demo::crash_child(&ctx),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "tasklog", &mut script);
            out.write_all(&kinds::with_kind_completion(shell, script))?;
            Ok(())
        }
        Command::CompleteKinds => kinds::complete(&ctx, out),
    }
}
