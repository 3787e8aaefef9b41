//! `tasklog serve --jetstream URLS --stream NAME`: one store shared by several servers
//! (docs/jetstream.md, "Failover").
//!
//! Every server listens at once. Until it holds the writer's lease (a key in a JetStream KV
//! bucket, `tasklog_jetstream::Leadership`) it is a standby: it redirects clients to the
//! lease holder's advertised URL (`tasklog_server::standby_router`). Once it holds the lease
//! it opens the store over the stream (`JetStreamLog`; its own directory keeps the lock and
//! copies of the snapshots, which the stream's object store keeps for every machine), then
//! serves the whole API on the same socket.
//!
//! When the lease is lost (another server took it over: this one was paused or cut off past
//! the lease), the server stops at once and exits with [`LEADERSHIP_LOST`]: its store may hold
//! changes the stream refused (the expected-sequence fence refuses every append of a
//! deposed writer), so it never serves again from that state. A process manager restarts it,
//! as a standby. On SIGINT or SIGTERM the writer closes its store and releases the lease, so
//! a standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tasklog::StoreOptions;
use tasklog_jetstream::{Holder, JetStreamLog, JetStreamOptions, Leadership, LeadershipOptions};
use tasklog_server::{ServerOptions, Writer};
use tokio::sync::watch;

use crate::args::ServeArgs;
use crate::commands::{Ctx, lock_wait};
use crate::exit::{Exit, LEADERSHIP_LOST, OPERATION};
use crate::record;
use crate::serve::{Signals, announce, serve_until, stop_on};

/// How long the writer retries opening its store over the stream (the stream may be
/// electing a leader) before it gives the lease up and fails.
const OPEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// One call's wait for the lease: longer than any lease (`--lease` is at most 1 h), so one
/// call can take over from a dead holder; a call that ends without the lease is repeated.
const ACQUIRE_WAIT: Duration = Duration::from_secs(2 * 3600);

/// Pause between attempts to reach the lease bucket while the cluster cannot be reached.
const ACQUIRE_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Runs the server as a standby, then as the writer once it holds the lease, until a signal
/// or the loss of the lease.
pub(crate) fn run(
    ctx: &Ctx,
    a: &ServeArgs,
    runtime: tokio::runtime::Runtime,
    signals: Signals,
    listener: tokio::net::TcpListener,
    options: ServerOptions,
) -> anyhow::Result<()> {
    let urls = a.jetstream.clone().unwrap_or_default();
    let stream = a.stream.clone().unwrap_or_default();
    let node_id = a
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), fastrand::u32(..)));
    let replicas = usize::try_from(a.replicas).unwrap_or(3);
    // The directory holds this server's record, its snapshots and its lock; the log is in
    // the stream.
    std::fs::create_dir_all(&ctx.dir)
        .with_context(|| format!("cannot create the store directory {}", ctx.dir.display()))?;
    // The writer serves on a second handle of the same socket: the standby's server owns the
    // first until it has drained.
    let std_listener = listener
        .into_std()
        .context("cannot share the listening socket")?;
    let writer_socket = std_listener
        .try_clone()
        .context("cannot share the listening socket")?;
    let result = runtime.block_on(async {
        let standby_socket = tokio::net::TcpListener::from_std(std_listener)?;
        let own_url = announce(
            ctx,
            &standby_socket,
            a.advertise.as_deref(),
            options.token.is_some(),
        )?;
        let stop = stop_on(signals);
        let lease_opts = LeadershipOptions::new(&urls, &stream, &node_id, &own_url)
            .lease(a.lease)
            .replicas(replicas);
        // Standby: redirect to whoever holds the lease while waiting for it.
        let (writer_tx, writer_rx) = watch::channel(Writer::Unknown);
        let (standby_over_tx, mut standby_over_rx) = watch::channel(false);
        let standby = tokio::spawn(tasklog_server::serve_standby(
            standby_socket,
            tasklog_server::standby_router(writer_rx, own_url.clone(), options.token.clone()),
            async move {
                let _ = standby_over_rx.wait_for(|over| *over).await;
            },
        ));
        ctx.ui.note(format!(
            "standby: waiting for the writer's lease of stream {stream} (node {node_id})"
        ));
        let leadership = acquire(lease_opts, &node_id, writer_tx, stop.clone()).await;
        let Some(leadership) = leadership? else {
            let _ = standby_over_tx.send(true);
            let _ = standby.await;
            return anyhow::Ok(Outcome::Stopped);
        };
        tracing::info!(node = %node_id, waited = ?leadership.waited(), "writer's lease acquired; opening the store");
        let log_opts = JetStreamOptions::new(&urls, &stream)
            .create(a.create_stream)
            .replicas(replicas)
            // Snapshots are kept in the stream's object store before the stream is cut below
            // them, so another machine opens from the newest one plus what follows.
            .writer_id(&node_id);
        let dir = ctx.dir.clone();
        let opened = tokio::task::spawn_blocking(move || open_store(&dir, log_opts)).await?;
        let store = match opened {
            Ok(store) => store,
            Err(e) => {
                let _ = standby_over_tx.send(true);
                let _ = standby.await;
                let _ = tokio::task::spawn_blocking(move || leadership.release()).await;
                return Err(e);
            }
        };
        // Hand the socket over: the standby drains, then the writer's server accepts.
        let _ = standby_over_tx.send(true);
        let _ = standby.await;
        let writer_listener = tokio::net::TcpListener::from_std(writer_socket)?;
        let mut lost = leadership.watch();
        let (end_tx, end_rx) = watch::channel(false);
        let mut stop_rx = stop.clone();
        let watcher = tokio::spawn(async move {
            let lost = tokio::select! {
                _ = lost.wait_for(|leader| !*leader) => true,
                _ = stop_rx.wait_for(|stopped| *stopped) => false,
            };
            let _ = end_tx.send(true);
            lost
        });
        ctx.ui.note(format!("writer: serving stream {stream} (node {node_id})"));
        let served = serve_until(writer_listener, store, options, end_rx).await;
        let lost = watcher.await.unwrap_or(false) || !leadership.is_leader();
        if lost {
            // The store was closed by the server; what it could not write was refused by the
            // stream's fence, never stored.
            if let Err(e) = served {
                tracing::warn!(error = %e, "the deposed writer's store did not close cleanly");
            }
            return Ok(Outcome::Lost);
        }
        let released = tokio::task::spawn_blocking(move || leadership.release()).await?;
        if let Err(e) = released {
            tracing::warn!(error = %e, "the writer's lease was not released; it runs out on its own");
        }
        served?;
        Ok(Outcome::Stopped)
    });
    record::remove(&ctx.dir, std::process::id());
    drop(runtime);
    match result? {
        Outcome::Stopped => {
            ctx.ui.note("server stopped");
            Ok(())
        }
        Outcome::Lost => Err(Exit::new(
            LEADERSHIP_LOST,
            format!(
                "another server took the writer's lease of stream {}; this one stopped writing (restart it to serve as a standby)",
                a.stream.as_deref().unwrap_or_default()
            ),
        )
        .into()),
    }
}

enum Outcome {
    Stopped,
    Lost,
}

/// Waits for the lease on a thread of its own (`Leadership::acquire` blocks), telling the
/// standby who holds it meanwhile. `None` when stopped first.
async fn acquire(
    opts: LeadershipOptions,
    node_id: &str,
    writer: watch::Sender<Writer>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Leadership>> {
    let (seen_tx, mut seen_rx) = watch::channel::<Option<Holder>>(None);
    let me = node_id.to_owned();
    let relay = tokio::spawn(async move {
        while seen_rx.changed().await.is_ok() {
            let now = match &*seen_rx.borrow_and_update() {
                Some(h) if h.holder == me => Writer::Opening,
                Some(h) => Writer::At(h.address.clone()),
                None => Writer::Unknown,
            };
            writer.send_replace(now);
        }
    });
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("tasklog-lease".into())
        .spawn(move || {
            loop {
                if *stopped.borrow() {
                    return;
                }
                match Leadership::acquire_watching(opts.clone(), ACQUIRE_WAIT, &seen_tx) {
                    Ok(l) => {
                        if *stopped.borrow() {
                            let _ = l.release();
                            return;
                        }
                        let _ = got_tx.send(l);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting for the writer's lease");
                        seen_tx.send_replace(None);
                        std::thread::sleep(ACQUIRE_RETRY_PAUSE);
                    }
                }
            }
        })
        .context("cannot start the lease thread")?;
    let got = tokio::select! {
        got = got_rx => got.ok(),
        _ = stop.wait_for(|stopped| *stopped) => None,
    };
    relay.abort();
    Ok(got)
}

/// Opens the store over the stream, retrying while the stream elects a leader.
fn open_store(dir: &std::path::Path, log_opts: JetStreamOptions) -> anyhow::Result<tasklog::Store> {
    let deadline = std::time::Instant::now() + OPEN_RETRY_MAX;
    let log = loop {
        match JetStreamLog::open(log_opts.clone()) {
            Ok(log) => break log,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "opening the stream; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(Exit::new(
                    OPERATION,
                    format!("cannot open stream {}: {e}", log_opts.stream),
                )
                .into());
            }
        }
    };
    // The server owns the work: expired worker leases are taken back under the default
    // policy; tasks claimed through the worker protocol keep running under their leases.
    StoreOptions::new()
        .lock_timeout(lock_wait())
        .open_with_log(dir, Arc::new(log))
        .with_context(|| format!("cannot open the store at {} over the stream", dir.display()))
}
