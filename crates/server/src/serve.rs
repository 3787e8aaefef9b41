//! Running a server: record where it listens in the store directory, supervise leases, and
//! shut down gracefully.

use std::future::{Future, IntoFuture};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tasklog::Store;
use tasklog::store::InterruptedPolicy;

use crate::options::ServerOptions;
use crate::state::AppState;

/// Longest wait for in-flight requests once shutdown began; then the store is closed anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Shortest period of the lease supervisor.
const LEASE_CHECK_MIN: Duration = Duration::from_millis(10);

/// Where a running server listens, written to `<store>/server.json` while it runs, so that CLI
/// commands on the same directory talk to it instead of opening the store. Never the token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerRecord {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's process id.
    pub pid: u32,
    /// True when requests need a bearer token.
    pub token_required: bool,
}

impl ServerRecord {
    /// The record file of a store directory.
    pub fn path(store_dir: &Path) -> PathBuf {
        store_dir.join("server.json")
    }

    /// Writes `record` atomically: a temporary file (mode 0600) written and fsynced, renamed
    /// over the record, then the directory fsynced.
    pub fn write(store_dir: &Path, record: &ServerRecord) -> std::io::Result<()> {
        let path = ServerRecord::path(store_dir);
        let tmp = store_dir.join(format!("server.json.tmp.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        let written = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        sync_dir(store_dir)
    }

    /// The record of a running server in `store_dir`, if any (None when there is none or it
    /// cannot be read; the reason is logged).
    pub fn read(store_dir: &Path) -> Option<ServerRecord> {
        let path = ServerRecord::path(store_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the server record");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the server record is not valid");
                None
            }
        }
    }

    /// Removes the record (no error when there is none).
    pub fn remove(store_dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(ServerRecord::path(store_dir)) {
            Ok(()) => sync_dir(store_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// True for a loopback address (`127.0.0.0/8`, `::1`, and `::ffff:127.x.y.z`).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Serves `store` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (at most [`SHUTDOWN_GRACE`]), and closes the store cleanly.
/// Meanwhile a supervisor recovers expired leases every `options.lease_check_interval`,
/// under the store's interrupted-work policy, and due schedules are fired every
/// `options.schedule_tick_interval`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let interval = options.lease_check_interval.max(LEASE_CHECK_MIN);
    let schedule_every = options.schedule_tick_interval;
    let backups = options.backups.clone();
    let state = AppState::new(store.clone(), options);
    let app = crate::router_with_state(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let firing = (!schedule_every.is_zero()).then(|| {
        tokio::spawn(crate::schedules::fire_schedules(
            store.clone(),
            schedule_every.max(LEASE_CHECK_MIN),
            stop_rx.clone(),
        ))
    });
    let backup_task =
        backups.map(|b| tokio::spawn(scheduled_backups(store.clone(), b, stop_rx.clone())));
    let supervisor = tokio::spawn(supervise_leases(store.clone(), interval, stop_rx));
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let on_signal = {
        let state = state.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            state.begin_shutdown();
            let _ = began_tx.send(());
        }
    };
    // Answers go out at once: with Nagle's algorithm a response written in two parts waits
    // for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(on_signal)
        .into_future();
    let grace = async {
        if began_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let served = tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "requests still in flight after the grace period; closing the store anyway");
            Ok(())
        }
    };
    state.begin_shutdown();
    let _ = stop_tx.send(true);
    let _ = supervisor.await;
    if let Some(firing) = firing {
        let _ = firing.await;
    }
    if let Some(t) = backup_task {
        let _ = t.await;
    }
    let closed = tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(std::io::Error::other)?;
    served?;
    closed.map_err(std::io::Error::other)?;
    tracing::info!("stopped; the store is closed");
    Ok(())
}

/// Every `interval`, treats running tasks whose lease expired as interrupted (the store's
/// policy: failed, or back to pending), until `stop` turns true or the store closes.
async fn supervise_leases(
    store: Store,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.recover_expired_leases()).await {
            // Under `Leave` the same expired leases are seen again every period: not news.
            Ok(Ok(ids))
                if !ids.is_empty() && store.interrupted_policy() != InterruptedPolicy::Leave =>
            {
                tracing::info!(count = ids.len(), tasks = ?ids, policy = ?store.interrupted_policy(), "expired leases recovered");
            }
            Ok(Ok(_)) => {}
            Ok(Err(tasklog::Error::Closed)) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, "recovering expired leases failed"),
            Err(e) => tracing::warn!(error = %e, "the lease check did not finish"),
        }
    }
}

/// Every `schedule.every`, writes a rotated online backup of the store (writers go on), until
/// `stop` turns true or the store closes. A failed backup is logged and tried again next
/// period; it never stops the server.
async fn scheduled_backups(
    store: Store,
    schedule: crate::options::BackupSchedule,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = schedule.every.max(Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let s = store.clone();
        let (dir, keep) = (schedule.dir.clone(), schedule.keep);
        match tokio::task::spawn_blocking(move || {
            tasklog::store::backup::backup_rotate(&s, &dir, keep)
        })
        .await
        {
            Ok(Ok(r)) => tracing::info!(backup = %r.backup.dir.display(), lsn = r.backup.lsn,
                removed = r.removed.len(), "scheduled backup written"),
            Ok(Err(tasklog::Error::Closed)) => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, dir = %schedule.dir.display(), "scheduled backup failed; trying again next period")
            }
            Err(e) => tracing::warn!(error = %e, "the scheduled backup did not finish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        let yes = [
            "127.0.0.1:80",
            "127.1.2.3:1",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
        ];
        for a in yes {
            assert!(is_loopback(&a.parse().unwrap()), "{a}");
        }
        let no = [
            "0.0.0.0:80",
            "10.0.0.1:80",
            "[::]:80",
            "[::ffff:10.0.0.1]:80",
        ];
        for a in no {
            assert!(!is_loopback(&a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ServerRecord::read(dir.path()), None);
        let r = ServerRecord {
            url: "http://127.0.0.1:8080".into(),
            pid: 42,
            token_required: true,
        };
        ServerRecord::write(dir.path(), &r).unwrap();
        assert_eq!(ServerRecord::read(dir.path()), Some(r));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ServerRecord::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(ServerRecord::path(dir.path()), b"{broken").unwrap();
        assert_eq!(ServerRecord::read(dir.path()), None);
        ServerRecord::remove(dir.path()).unwrap();
        ServerRecord::remove(dir.path()).unwrap();
        assert_eq!(ServerRecord::read(dir.path()), None);
    }
}
