//! `tasklog serve --jetstream URLS --stream NAME`: one store shared by several servers
//! (docs/jetstream.md, "Failover").
//!
//! Every server listens at once. Until it holds the writer's lease (a key in a JetStream KV
//! bucket, `tasklog_jetstream::Leadership`) it is a standby: it answers reads from a replica
//! that follows the stream and forwards the rest to the lease holder's advertised URL, or
//! redirects clients there (`--standby-handoff`, `tasklog_server::standby_router`). Once it
//! holds the lease it opens the store over the stream (`JetStreamLog`; its own directory keeps
//! the lock and copies of the snapshots, which the stream's object store keeps for every
//! machine), then serves the whole API on the same socket.
//!
//! When the lease is lost (another server took it over: this one was paused or cut off past
//! the lease), the server stops at once and exits with [`LEADERSHIP_LOST`]: its store may hold
//! changes the stream refused (the expected-sequence fence refuses every append of a
//! deposed writer), so it never serves again from that state. The same when its store is
//! poisoned (its first append was fenced by a late append of the writer it replaced, or the
//! stream could not be written): it releases the lease first, so another server (or itself,
//! restarted) takes over at once from the stream as it is. A process manager restarts it,
//! as a standby. On SIGINT or SIGTERM the writer closes its store and releases the lease, so
//! a standby takes over at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tasklog::StoreOptions;
use tasklog_jetstream::{Holder, JetStreamLog, JetStreamOptions, Leadership, LeadershipOptions};
use tasklog_server::{Handoff, ReplicaSlot, ServerOptions, Writer};
use tokio::sync::watch;

use crate::args::{ServeArgs, StandbyHandoff};
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

/// How often the writer checks that its store still accepts writes.
const POISON_CHECK_EVERY: Duration = Duration::from_millis(200);

/// How often a standby's replica follows the stream.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// A replica that could not follow for this long is closed and opened again (it already
/// stopped serving reads: `ReplicaSlot` serves none staler than this).
const REPLICA_STALE_MAX: Duration = tasklog_server::standby::REPLICA_STALE_MAX;

/// A follow that takes longer than this is logged (reads waiting for an LSN wait for it).
const SLOW_FOLLOW: Duration = Duration::from_millis(500);

/// Pauses before a replica that could not open (no stream yet, no cluster) is tried again:
/// from the first, doubled up to the second. A new deployment's stream appears moments after
/// its first writer takes the lease, and reads are forwarded until a replica opens.
const REPLICA_REOPEN_PAUSE_MIN: Duration = Duration::from_millis(100);
const REPLICA_REOPEN_PAUSE_MAX: Duration = Duration::from_secs(2);

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
        // Standby: reads from a replica that follows the stream, the rest handed to whoever
        // holds the lease, while waiting for it.
        let (writer_tx, writer_rx) = watch::channel(Writer::Unknown);
        let (standby_over_tx, mut standby_over_rx) = watch::channel(false);
        let replica = ReplicaSlot::default();
        let follower = tokio::spawn(follow_stream(
            replica.clone(),
            JetStreamOptions::new(&urls, &stream),
            ctx.dir.clone(),
            options.clone(),
            standby_over_tx.subscribe(),
        ));
        let standby = tokio::spawn(tasklog_server::serve_standby(
            standby_socket,
            tasklog_server::standby_router(
                writer_rx,
                own_url.clone(),
                options.token.clone(),
                replica,
                match a.standby_handoff {
                    StandbyHandoff::Forward => Handoff::Forward,
                    StandbyHandoff::Redirect => Handoff::Redirect,
                },
            ),
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
            let _ = follower.await;
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
                let _ = follower.await;
                let _ = tokio::task::spawn_blocking(move || leadership.release()).await;
                // NOTE: the open's own first write (recovery's interrupted-work events) can
                // be fenced by a late append of the writer this one took the lease from: that
                // writer is deposed but its append landed before this one wrote anything. The
                // open then fails on a poisoned log, which is the running writer's
                // `Outcome::Poisoned`: exit as deposed, and a fresh process reopens the stream.
                if refused_by_the_log(&e) {
                    return Err(Exit::new(
                        LEADERSHIP_LOST,
                        format!(
                            "the log of stream {stream} refused this writer's first appends while it opened (fenced by another writer, or the stream could not be written): {e:#}; it released the lease and stopped (restart it to serve as a standby)"
                        ),
                    )
                    .into());
                }
                return Err(e);
            }
        };
        // Hand the socket over: the standby drains (its replica, if any, kept serving reads
        // while the store opened), then the writer's server accepts.
        let _ = standby_over_tx.send(true);
        let _ = standby.await;
        let _ = follower.await;
        let writer_listener = tokio::net::TcpListener::from_std(writer_socket)?;
        let mut lost = leadership.watch();
        let (end_tx, end_rx) = watch::channel(false);
        let mut stop_rx = stop.clone();
        let watched = store.clone();
        let watcher = tokio::spawn(async move {
            let poisoned = async {
                loop {
                    if let Some(cause) = watched.poisoned() {
                        return cause;
                    }
                    tokio::time::sleep(POISON_CHECK_EVERY).await;
                }
            };
            let why = tokio::select! {
                _ = lost.wait_for(|leader| !*leader) => Some(Outcome::Lost),
                cause = poisoned => {
                    tracing::error!(%cause, "the writer's log refuses writes; stopping so that a fresh process reopens the stream");
                    Some(Outcome::Poisoned)
                }
                _ = stop_rx.wait_for(|stopped| *stopped) => None,
            };
            let _ = end_tx.send(true);
            why
        });
        ctx.ui.note(format!("writer: serving stream {stream} (node {node_id})"));
        let served = serve_until(writer_listener, store, options, end_rx).await;
        let why = watcher.await.unwrap_or(None);
        if matches!(why, Some(Outcome::Lost)) || !leadership.is_leader() {
            // The store was closed by the server; what it could not write was refused by the
            // stream's fence, never stored.
            if let Err(e) = served {
                tracing::warn!(error = %e, "the deposed writer's store did not close cleanly");
            }
            return Ok(Outcome::Lost);
        }
        // Stopped, or poisoned (fenced by a late append of a deposed writer, or the stream
        // could not be written): hand the lease over at once.
        let released = tokio::task::spawn_blocking(move || leadership.release()).await?;
        if let Err(e) = released {
            tracing::warn!(error = %e, "the writer's lease was not released; it runs out on its own");
        }
        if let Some(Outcome::Poisoned) = why {
            if let Err(e) = served {
                tracing::warn!(error = %e, "the poisoned writer's store did not close cleanly");
            }
            return Ok(Outcome::Poisoned);
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
        Outcome::Poisoned => Err(Exit::new(
            LEADERSHIP_LOST,
            format!(
                "the log of stream {} refused this writer's appends (fenced by another writer, or the stream could not be written); it released the lease and stopped (restart it to serve as a standby)",
                a.stream.as_deref().unwrap_or_default()
            ),
        )
        .into()),
    }
}

enum Outcome {
    Stopped,
    /// Another server took the lease.
    Lost,
    /// The writer's log refuses writes; the lease was released.
    Poisoned,
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

/// Whether an open failed because the log refused its writes (poisoned).
fn refused_by_the_log(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<tasklog::Error>(),
            Some(tasklog::Error::Poisoned { .. })
        )
    })
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

/// Keeps a read-only replica of the store following the stream in `slot` until `over` turns
/// true: opens it (fetching the newest kept snapshot), follows every [`FOLLOW_EVERY`], and
/// empties the slot (reads are then redirected) when it fell behind a cut of the stream or
/// could not follow for [`REPLICA_STALE_MAX`]; then opens it again.
async fn follow_stream(
    slot: ReplicaSlot,
    log_opts: JetStreamOptions,
    dir: std::path::PathBuf,
    options: ServerOptions,
    mut over: watch::Receiver<bool>,
) {
    let mut last_followed = std::time::Instant::now();
    let mut next_open = std::time::Instant::now();
    let mut reopen_pause = REPLICA_REOPEN_PAUSE_MIN;
    while !*over.borrow() {
        match slot.store() {
            None if std::time::Instant::now() >= next_open => {
                let (d, o) = (dir.clone(), log_opts.clone());
                let opened = tokio::task::spawn_blocking(move || {
                    let log = JetStreamLog::open(o)?;
                    StoreOptions::new()
                        .read_only(true)
                        .open_with_log(&d, Arc::new(log))
                })
                .await;
                match opened {
                    Ok(Ok(store)) => {
                        tracing::info!(lsn = store.last_lsn(), "replica open; serving reads");
                        reopen_pause = REPLICA_REOPEN_PAUSE_MIN;
                        slot.set(Some(store), &options);
                        last_followed = std::time::Instant::now();
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "no replica yet; requests are redirected");
                        next_open = std::time::Instant::now() + reopen_pause;
                        reopen_pause = (reopen_pause * 2).min(REPLICA_REOPEN_PAUSE_MAX);
                    }
                    Err(e) => tracing::warn!(error = %e, "opening the replica panicked"),
                }
            }
            None => {}
            Some(_) => {
                let started = std::time::Instant::now();
                let follower = slot.clone();
                let followed = tokio::task::spawn_blocking(move || follower.follow()).await;
                if started.elapsed() > SLOW_FOLLOW {
                    tracing::info!(took = ?started.elapsed(), "a slow follow of the stream");
                }
                match followed {
                    Ok(None) => {}
                    Ok(Some(Ok(_))) => last_followed = std::time::Instant::now(),
                    Ok(Some(Err(e))) if e.is_corruption() => {
                        tracing::warn!(error = %e, "the replica fell behind; reopening it");
                        slot.set(None, &options);
                        next_open = std::time::Instant::now();
                    }
                    Ok(Some(Err(e))) if last_followed.elapsed() >= REPLICA_STALE_MAX => {
                        tracing::warn!(error = %e, "the replica cannot follow; reads are redirected until it can");
                        slot.set(None, &options);
                        next_open = std::time::Instant::now() + REPLICA_REOPEN_PAUSE_MAX;
                    }
                    Ok(Some(Err(e))) => {
                        tracing::debug!(error = %e, "following the stream failed; retrying")
                    }
                    Err(e) => tracing::warn!(error = %e, "following the stream panicked"),
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = over.changed() => {}
        }
    }
    slot.set(None, &options);
}
