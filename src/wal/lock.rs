//! The writer's lock, and waiting for it.
//!
//! One writer at a time holds `LOCK` (an OS file lock: `flock` on Unix, `LockFileEx` on
//! Windows, through `std::fs::File::try_lock`). The lock dies with its process, so a crashed
//! writer never leaves a store locked. The holder writes who it is into the file
//! (`pid=<id> since=<RFC 3339 time>`), so that a writer refused after waiting can say which
//! process holds the store and since when. That text is information only: nothing trusts it,
//! it is never synced, and a missing or garbled one just makes the message vaguer.

use std::path::Path;
use std::time::{Duration, Instant};

use super::storage::{Storage, StorageLock};
use crate::error::{Error, Result};

/// Most bytes of a holder line read back: a real one is about 50.
const HOLDER_BYTES_MAX: usize = 256;

/// Longest pause between two attempts while waiting: short enough that a writer queued
/// behind a one-shot command starts within a few milliseconds of it ending.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(25);

/// Takes `lock_file` (the lock of the store or log at `dir`), trying again until `timeout`
/// has passed (`Duration::ZERO`: one attempt). Refused, the error names the holder when the
/// lock file says who it is.
pub fn acquire(
    storage: &dyn Storage,
    dir: &Path,
    lock_file: &Path,
    timeout: Duration,
) -> Result<Box<dyn StorageLock>> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(lock) = storage
            .try_lock(lock_file)
            .map_err(|e| Error::io("lock", lock_file, e))?
        {
            return Ok(lock);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
                lock_file: lock_file.to_path_buf(),
                holder: storage.lock_holder(lock_file).and_then(|h| describe(&h)),
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            });
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
}

/// The line a holder writes into its lock file.
pub(crate) fn holder_line() -> String {
    format!(
        "pid={} since={}\n",
        std::process::id(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// "process 1234 since 2026-12-04T13:00:01Z" from a holder line; `None` when it is not one
/// (an old store's empty lock file, or bytes written by something else).
pub(crate) fn describe(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw.get(..raw.len().min(HOLDER_BYTES_MAX))?).ok()?;
    let line = text.lines().next()?;
    let mut pid = None;
    let mut since = None;
    for field in line.split_whitespace() {
        match field.split_once('=') {
            Some(("pid", v)) => pid = v.parse::<u32>().ok(),
            Some(("since", v)) => {
                since = chrono::DateTime::parse_from_rfc3339(v)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            }
            _ => {}
        }
    }
    let pid = pid?;
    Some(match since {
        Some(t) => format!(
            "process {pid} since {}",
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => format!("process {pid}"),
    })
}

/// Reads at most [`HOLDER_BYTES_MAX`] bytes of a lock file.
pub(crate) fn read_holder(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(64);
    file.take(HOLDER_BYTES_MAX as u64)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_line_reads_back_as_the_process_and_its_start() {
        let line = holder_line();
        let said = describe(line.as_bytes()).expect("a holder");
        assert!(
            said.starts_with(&format!("process {} since ", std::process::id())),
            "{said}"
        );
    }

    #[test]
    fn anything_else_in_a_lock_file_names_no_holder() {
        for raw in [
            &b""[..],
            b"\n",
            b"pid=abc since=x",
            b"since=2026-12-04T13:00:01Z",
            &[0xff, 0xfe, 0x00],
        ] {
            assert_eq!(describe(raw), None, "{raw:?}");
        }
        assert_eq!(
            describe(b"pid=7 since=garbage").as_deref(),
            Some("process 7")
        );
    }

    #[test]
    fn waiting_gives_up_after_the_timeout_and_names_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock_file = dir.path().join("LOCK");
        let storage = super::super::StdStorage;
        let _held = acquire(&storage, dir.path(), &lock_file, Duration::ZERO).expect("first");
        let err =
            acquire(&storage, dir.path(), &lock_file, Duration::from_millis(60)).expect_err("held");
        match err {
            Error::Locked {
                holder, waited_ms, ..
            } => {
                assert!(waited_ms >= 60, "{waited_ms}");
                let holder = holder.expect("the holder is named");
                assert!(holder.contains(&std::process::id().to_string()), "{holder}");
            }
            other => panic!("expected Locked, got {other}"),
        }
    }

    #[test]
    fn a_writer_waiting_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lock_file = dir.path().join("LOCK");
        let storage = super::super::StdStorage;
        let held = acquire(&storage, dir.path(), &lock_file, Duration::ZERO).expect("first");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        });
        acquire(&storage, dir.path(), &lock_file, Duration::from_secs(10))
            .expect("taken after the release");
        release.join().expect("join");
    }
}
