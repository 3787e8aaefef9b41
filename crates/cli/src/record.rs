//! The server record `<store>/server.json` ([`ServerRecord`]): written atomically by `serve`
//! once it listens, removed when it stops, and read by every other command to decide whether
//! to talk to a server instead of opening the store. A record whose process is dead or does not
//! answer `/livez` is stale and ignored.
//!
//! NOTE: private helpers until the server crate offers `ServerRecord::{write, read, remove}`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tasklog_server::ServerRecord;

/// How long a command waits for a recorded server's `/livez` before it treats the record as
/// stale and opens the store itself.
pub const LIVEZ_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Writes the record atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn write(store_dir: &Path, record: &ServerRecord) -> anyhow::Result<()> {
    let path = ServerRecord::path(store_dir);
    let tmp = store_dir.join("server.json.tmp");
    let text = serde_json::to_string_pretty(record)?;
    let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot write the server record {}", path.display()))?;
    sync_dir(store_dir);
    Ok(())
}

/// Removes the record (if it is still ours: a later server may have replaced it).
pub fn remove(store_dir: &Path, pid: u32) {
    let path = ServerRecord::path(store_dir);
    if read(store_dir).is_some_and(|r| r.pid != pid) {
        return;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(store_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the server record")
        }
    }
}

/// The record, if there is a readable one.
pub fn read(store_dir: &Path) -> Option<ServerRecord> {
    let path = ServerRecord::path(store_dir);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "unreadable server record ignored");
            None
        }
    }
}

/// The recorded server, if its process is alive and it answers `/livez`; None otherwise (a
/// stale record is logged at debug level and ignored).
pub fn live(store_dir: &Path) -> Option<ServerRecord> {
    let record = read(store_dir)?;
    if !pid_alive(record.pid) {
        tracing::debug!(pid = record.pid, url = %record.url, "stale server record (process gone) ignored");
        return None;
    }
    if !answers_livez(&record.url, LIVEZ_TIMEOUT) {
        tracing::debug!(pid = record.pid, url = %record.url, "stale server record (no answer on /livez) ignored");
        return None;
    }
    Some(record)
}

/// True when a process with this id exists (`kill(pid, 0)`; EPERM means it exists).
#[cfg(unix)]
pub fn pid_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

/// Elsewhere (Windows) the id cannot be asked about without unsafe code: taken as alive, so
/// the `/livez` probe that follows decides.
#[cfg(not(unix))]
pub fn pid_alive(pid: u32) -> bool {
    pid != 0
}

/// True when `GET <url>/livez` answers 2xx within `timeout`.
pub fn answers_livez(url: &str, timeout: Duration) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    match agent
        .get(format!("{}/livez", url.trim_end_matches('/')))
        .call()
    {
        Ok(resp) => resp.status().is_success(),
        Err(e) => {
            tracing::debug!(url, error = %e, "no answer on /livez");
            false
        }
    }
}

fn sync_dir(dir: &Path) {
    // Windows cannot open a directory as a file; NTFS journals the entry.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
