//! `tasklog serve`: opens the store as the owner of its work (the interrupted-work policy
//! applies at open, and the server's lease supervisor applies it to expired leases), binds,
//! records where it listens in `<dir>/server.json`, serves until SIGINT or SIGTERM, then
//! removes the record and closes the store.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context as _;
use tasklog::StoreOptions;
use tasklog_server::{ServerOptions, ServerRecord};

use crate::args::ServeArgs;
use crate::commands::{Ctx, close_before_exit, open_write_with};
use crate::exit::{Exit, OPERATION, USAGE};
use crate::record;

/// How long in-flight requests (and open event streams) get to finish after the signal.
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// `serve [--listen ADDR] [--files-dir DIR]`; the token comes from `--token-file` or
/// `TASKLOG_TOKEN`. With `--jetstream`, the store is shared with other servers
/// (`serve_jetstream`).
pub fn run(ctx: &Ctx, a: &ServeArgs, token: Option<String>) -> anyhow::Result<()> {
    let addr = resolve(&a.listen)?;
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(Exit::new(
            USAGE,
            format!(
                "refusing to listen on {addr} without a token: anyone who can reach that address could read and change every task; pass --token-file FILE or set TASKLOG_TOKEN (or listen on 127.0.0.1)"
            ),
        )
        .into());
    }
    if let Some(files) = &a.files_dir
        && !files.is_dir()
    {
        return Err(Exit::new(
            USAGE,
            format!("--files-dir {}: not a directory", files.display()),
        )
        .into());
    }
    #[cfg(not(feature = "jetstream"))]
    if a.jetstream.is_some() {
        return Err(Exit::new(
            USAGE,
            "--jetstream: this tasklog was built without JetStream support; build it with `cargo build --release -p tasklog-cli --features jetstream`",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tasklog-serve")
        .build()
        .context("cannot start the async runtime")?;
    // Signals first (one that arrives while the store opens still stops the server cleanly),
    // then the address: a busy port fails before the store is opened and its interrupted work
    // recovered for a server that will not run.
    let (signals, listener) = runtime.block_on(async {
        let signals = Signals::install()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Exit::new(OPERATION, format!("cannot listen on {addr}: {e}")))?;
        anyhow::Ok((signals, listener))
    })?;
    let options = server_options(a, token.clone());
    #[cfg(feature = "jetstream")]
    if a.jetstream.is_some() {
        return crate::serve_jetstream::run(ctx, a, runtime, signals, listener, options);
    }
    // The server owns the work: the store's default policy (mark interrupted tasks failed)
    // applies at open, as it would for an application's runtime.
    let store = open_write_with(&ctx.dir, StoreOptions::new())?;
    let served = runtime.block_on(async {
        announce(ctx, &listener, None, options.token.is_some())?;
        let stop = stop_on(signals);
        serve_until(listener, store.clone(), options, stop).await
    });
    record::remove(&ctx.dir, std::process::id());
    // Dropping the runtime waits for blocking store calls still running.
    drop(runtime);
    let closed = close_before_exit(store);
    served?;
    closed?;
    ctx.ui.note("server stopped; store closed");
    Ok(())
}

/// The server's options from the command line.
fn server_options(a: &ServeArgs, token: Option<String>) -> ServerOptions {
    let mut options = ServerOptions::default();
    options.token = token;
    options.files_dir = a.files_dir.clone();
    options.max_body_bytes = usize::try_from(a.max_body_bytes).unwrap_or(usize::MAX);
    options.max_page_size = usize::try_from(a.max_page_size).unwrap_or(usize::MAX);
    options.request_timeout = Duration::from_secs(a.request_timeout);
    options.max_sse_subscribers = usize::try_from(a.max_sse_subscribers).unwrap_or(usize::MAX);
    options.max_claim_wait = Duration::from_millis(a.max_claim_wait_ms);
    if let (Some(every), Some(dir)) = (a.backup_every, a.backup_dir.clone()) {
        let keep = usize::try_from(a.backup_keep).unwrap_or(usize::MAX);
        options.backups = Some(tasklog_server::BackupSchedule::new(every, keep, dir));
    }
    options
}

/// Records where the server listens (`<dir>/server.json`) and prints the `listening on URL`
/// line; returns the URL (`advertised`, else the bound address as a local client reaches it).
pub(crate) fn announce(
    ctx: &Ctx,
    listener: &tokio::net::TcpListener,
    advertised: Option<&str>,
    token_required: bool,
) -> anyhow::Result<String> {
    let local = listener.local_addr()?;
    let url = match advertised {
        Some(url) => url.to_owned(),
        None => format!("http://{}", reachable(local)),
    };
    let rec = ServerRecord {
        url: url.clone(),
        pid: std::process::id(),
        token_required,
    };
    record::write(&ctx.dir, &rec)?;
    tracing::info!(%url, dir = %ctx.dir.display(), token_required, "listening");
    ctx.ui.note(format!(
        "serving {} on {url} (Ctrl-C to stop)",
        ctx.dir.display()
    ));
    {
        // NOTE: scripts and tests read the port from this line (with --listen 127.0.0.1:0).
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {url}")?;
        stdout.flush()?;
    }
    Ok(url)
}

/// A channel that turns true on SIGINT or SIGTERM.
pub(crate) fn stop_on(signals: Signals) -> tokio::sync::watch::Receiver<bool> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signals.recv().await;
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Serves `store` until `stop` turns true, then drains (at most [`DRAIN_MAX`]); the server
/// closes the store.
pub(crate) async fn serve_until(
    listener: tokio::net::TcpListener,
    store: tasklog::Store,
    options: ServerOptions,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut graceful_rx = stop.clone();
    let shutdown = async move {
        let _ = graceful_rx.wait_for(|stopped| *stopped).await;
    };
    let server = tasklog_server::serve(listener, store, options, shutdown);
    tokio::pin!(server);
    let mut stop_rx = stop;
    let drained = async {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(DRAIN_MAX).await;
    };
    tokio::select! {
        result = &mut server => result.context("the server failed")?,
        () = drained => tracing::warn!(
            secs = DRAIN_MAX.as_secs(),
            "requests still in flight after the drain bound; stopping anyway"
        ),
    }
    Ok(())
}

/// SIGINT and SIGTERM, installed before the server says it listens (a signal sent as soon as
/// a script reads the `listening on` line must stop it cleanly, not kill it).
#[cfg(unix)]
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub(crate) fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    /// Waits for either.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = self.term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    }
}

/// Ctrl-C and Ctrl-Break (what Windows sends a console program), installed as early.
#[cfg(windows)]
pub(crate) struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
}

#[cfg(windows)]
impl Signals {
    pub(crate) fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            ctrl_c: tokio::signal::windows::ctrl_c().context("cannot handle Ctrl-C")?,
            ctrl_break: tokio::signal::windows::ctrl_break().context("cannot handle Ctrl-Break")?,
        })
    }

    /// Waits for either.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.ctrl_c.recv() => tracing::info!("Ctrl-C: shutting down"),
            _ = self.ctrl_break.recv() => tracing::info!("Ctrl-Break: shutting down"),
        }
    }
}

/// The address to bind: `HOST:PORT` (an IP or a name such as `localhost`).
fn resolve(listen: &str) -> anyhow::Result<SocketAddr> {
    let bad = |why: String| Exit::new(USAGE, format!("--listen {listen:?}: {why}"));
    let mut addrs = listen
        .to_socket_addrs()
        .map_err(|e| bad(format!("expected HOST:PORT ({e})")))?;
    addrs
        .next()
        .ok_or_else(|| bad("resolves to no address".into()).into())
}

/// The address a local client should use: an unspecified bind address (0.0.0.0, ::) is
/// reached through loopback.
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The token from `--token-file` (its first line, trimmed) or `TASKLOG_TOKEN`.
pub fn token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            text.lines().next().unwrap_or("").trim().to_string()
        }
        None => match std::env::var("TASKLOG_TOKEN") {
            Ok(t) => t.trim().to_string(),
            Err(_) => return Ok(None),
        },
    };
    if token.is_empty() {
        return Err(Exit::new(USAGE, "the token is empty (--token-file or TASKLOG_TOKEN)").into());
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_reached_through_loopback() {
        let a: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(reachable(a).to_string(), "127.0.0.1:80");
        let b: SocketAddr = "[::]:80".parse().unwrap();
        assert_eq!(reachable(b).to_string(), "[::1]:80");
        let c: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(reachable(c), c);
    }

    #[test]
    fn listen_addresses_parse_or_are_usage_errors() {
        assert!(resolve("127.0.0.1:0").is_ok());
        assert!(resolve("nonsense").is_err());
    }
}
