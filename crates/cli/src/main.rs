//! `tasklog`: the command-line interface to a tasklog store (issue #6). See `tasklog --help`
//! and the README's "CLI tour".

/// `eprintln!` that cannot panic: with stderr closed or full the line is lost, and the command
/// still ends with its own exit code (`eprintln!` would panic, exit 101).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod args;
mod client;
mod commands;
mod demo;
mod exit;
mod output;
mod progress;
mod record;
mod serve;
#[cfg(feature = "jetstream")]
mod serve_jetstream;
mod stress;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit with 2 here (clap's default); --help and --version with 0.
    let cli = args::Cli::parse();
    init_logging();
    match commands::run(cli) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(e) if exit::is_broken_pipe(&e) => ExitCode::from(exit::SUCCESS),
        Err(e) => {
            if let Some(msg) = exit::message_for(&e) {
                eprintln!("tasklog: error: {msg}");
            }
            ExitCode::from(exit::code_for(&e))
        }
    }
}

/// Logs to stderr at WARN unless `RUST_LOG` says otherwise; no colors when `NO_COLOR` is set
/// or stderr is not a terminal.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}
