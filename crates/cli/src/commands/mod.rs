//! Command dispatch and the shared helpers: resolving and opening the store.

mod maintain;
mod read;
mod repair;
mod transfer;
mod verify;
mod watch;
mod write;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tasklog::{Store, StoreOptions};

use crate::args::{Cli, Command};
use crate::exit::{Exit, OPERATION};
use crate::progress::Ui;

pub use transfer::export_to_path;

/// What every command gets.
pub struct Ctx {
    /// The store directory (after defaults).
    pub dir: PathBuf,
    /// Progress bars and stderr notes.
    pub ui: Ui,
}

impl Ctx {
    /// Opens the store for writing, creating the directory when missing.
    pub fn open_write(&self) -> anyhow::Result<Store> {
        open_write(&self.dir)
    }

    /// Opens an existing store read-only (no lock, no recovery writes). A missing store is an
    /// error; it is not created.
    pub fn open_read(&self) -> anyhow::Result<Store> {
        open_read(&self.dir)
    }
}

/// Opens the store at `dir` for writing.
///
/// NOTE: without segment preallocation. A CLI process appends a handful of records and exits,
/// so reserving 64 MiB up front (and fsyncing it) on every open buys nothing, and every later
/// read-only open would read the reserved zeros back. `stress` keeps the library default.
pub fn open_write(dir: &Path) -> anyhow::Result<Store> {
    open_write_with(dir, StoreOptions::new().preallocate(false))
}

/// Opens the store at `dir` for writing with `options`.
pub fn open_write_with(dir: &Path, options: StoreOptions) -> anyhow::Result<Store> {
    Store::open_with(dir, options)
        .with_context(|| format!("cannot open the store at {}", dir.display()))
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
    if tasklog::store::recovery::wal_dir(dir).is_dir() {
        return Ok(());
    }
    let what = if dir.exists() {
        "holds no tasklog store (no wal/ directory)"
    } else {
        "does not exist"
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

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        dir: cli.store_dir(),
        ui: Ui::detect(cli.quiet),
    };
    // NOTE: not `stdout().lock()`: `stress` and `demo` write from several threads.
    let mut stdout = std::io::stdout();
    let out: &mut dyn Write = &mut stdout;
    match cli.command {
        Command::Submit(a) => write::submit(&ctx, out, a),
        Command::Start { id } => write::simple(&ctx, out, |s| s.start(&id)),
        Command::Progress {
            id,
            percent,
            step,
            message,
        } => write::simple(&ctx, out, |s| {
            s.progress(&id, percent, step.as_deref(), message.as_deref())
        }),
        Command::Checkpoint { id, name, data } => write::simple(&ctx, out, |s| {
            s.checkpoint(&id, &name, data.clone().unwrap_or_default())
        }),
        Command::Output { id, kind, content } => {
            write::simple(&ctx, out, |s| s.output(&id, kind, &content))
        }
        Command::Complete { id, result } => {
            write::simple(&ctx, out, |s| s.complete(&id, result.clone()))
        }
        Command::Fail { id, error } => write::simple(&ctx, out, |s| s.fail(&id, &error)),
        Command::Cancel { id, reason } => {
            write::simple(&ctx, out, |s| s.cancel(&id, reason.as_deref()))
        }
        Command::Retry { id } => write::simple(&ctx, out, |s| s.retry(&id)),
        Command::Get { id, json } => read::get(&ctx, out, &id, json),
        Command::List(a) => read::list(&ctx, out, &a),
        Command::History { id, json } => read::history(&ctx, out, &id, json),
        Command::Stats { by, json } => read::stats(&ctx, out, by.as_deref(), json),
        Command::Export(a) => transfer::export(&ctx, out, &a),
        Command::Import(a) => transfer::import(&ctx, out, &a),
        Command::Cleanup { older_than } => maintain::cleanup(&ctx, out, older_than),
        Command::Snapshot => maintain::snapshot(&ctx, out),
        Command::Compact => maintain::compact(&ctx, out),
        Command::Verify { json } => verify::verify(&ctx, out, json),
        Command::Repair { yes } => repair::repair(&ctx, out, yes),
        Command::Watch { from, json } => watch::watch(&ctx, out, from, json),
        Command::Stress(a) => crate::stress::run(&ctx, &a),
        Command::Demo => crate::demo::run(&ctx),
        Command::DemoCrashChild => crate::demo::crash_child(&ctx),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "tasklog", out);
            Ok(())
        }
    }
}
