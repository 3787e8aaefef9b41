//! The crate's one error type. Every variant carries the context an operator needs to act on it:
//! the file, the byte offset, the LSN, the task id or the JSON path involved.

use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout tasklog.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tasklog.
///
/// Match the variants a caller can act on; the rest carry their context in `Display` and
/// their cause in [`source()`](std::error::Error::source).
///
/// ```
/// use tasklog::{Error, NewTask, Store};
///
/// # fn main() -> tasklog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let task = store.submit(NewTask::new("once"))?;
/// match store.complete(&task.id, None) {
///     Err(Error::InvalidTransition { from, .. }) => assert_eq!(from.as_str(), "pending"),
///     other => panic!("a pending task cannot complete: {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- I/O and files -------------------------------------------------------------------
    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}{}", path.display(), io_hint(source.kind()))]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Another writer holds the store's lock file (after waiting for it as long as
    /// `StoreOptions::lock_timeout` allowed).
    #[error("{}", locked_message(path, lock_file, holder.as_deref(), *waited_ms))]
    Locked {
        /// The store or log directory.
        path: PathBuf,
        /// The lock file that could not be taken.
        lock_file: PathBuf,
        /// Who holds it, as its holder wrote it ("process 1234 since 2026-12-04T13:00:01Z"),
        /// when known.
        holder: Option<String>,
        /// How long this open waited for the lock before giving up, in milliseconds.
        waited_ms: u64,
    },

    /// An earlier write or fsync failed, so nothing written since can be trusted to be durable.
    /// The handle refuses all further writes; reopen the store to recover from what is on disk.
    #[error("the log is poisoned by an earlier I/O failure ({cause}); reopen the store to recover")]
    Poisoned {
        /// The first failure, as text.
        cause: String,
        /// The first failure itself, as [`Error::source`](std::error::Error::source) (a
        /// faithful copy: the caller whose write failed got the original; an I/O error keeps
        /// its OS code, kind and text). In a `source()` chain it is an `Arc<tasklog::Error>`;
        /// walk on from it to reach the `io::Error`.
        #[source]
        source: Option<Arc<Error>>,
    },

    /// The handle was closed.
    #[error("the store is closed")]
    Closed,

    /// The handle was opened read-only.
    #[error("the store was opened read-only")]
    ReadOnly,

    // ----- On-disk format ------------------------------------------------------------------
    /// Bytes on disk are damaged: a checksum mismatch, an impossible length, a gap in LSNs.
    #[error("corruption in {}{}{}: {reason}", file.display(), offset.map(|o| format!(" at byte offset {o}")).unwrap_or_default(), lsn.map(|l| format!(" (LSN {l})")).unwrap_or_default())]
    Corrupt {
        /// The file in which the damage was found.
        file: PathBuf,
        /// Byte offset within the file, when known.
        offset: Option<u64>,
        /// The LSN of the damaged or expected record, when known.
        lsn: Option<u64>,
        /// What is wrong.
        reason: String,
    },

    /// A file was written by a format version this build cannot read.
    #[error("{}: unsupported format version {found} (this build reads versions up to {supported})", file.display())]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },

    /// A record or value is larger than the format allows.
    #[error("{what} is {len} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A payload could not be encoded or decoded.
    #[error("codec error in {what}: {reason}")]
    Codec {
        /// What was being encoded or decoded.
        what: String,
        /// Why it failed.
        reason: String,
        /// The encoder's or decoder's own error (postcard, serde_json), when there is one:
        /// `e.source()` downcasts to it.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    // ----- Tasks ----------------------------------------------------------------------------
    /// No task has this id.
    #[error("task {id:?} not found")]
    NotFound {
        /// The id asked for.
        id: String,
    },

    /// A task with this id already exists.
    #[error("task {id:?} already exists")]
    AlreadyExists {
        /// The id.
        id: String,
    },

    /// The task's state does not allow this change.
    #[error("task {id:?}: cannot {action} a task that is {from} (would move {from} -> {to})")]
    InvalidTransition {
        /// The task.
        id: String,
        /// What was attempted ("start", "complete", ...).
        action: &'static str,
        /// The current state.
        from: crate::task::TaskState,
        /// The state the change would lead to.
        to: crate::task::TaskState,
    },

    /// Optimistic concurrency: the caller saw an older version of the task.
    #[error("task {id:?}: version conflict (expected version {expected}, the task is at {actual})")]
    Conflict {
        /// The task.
        id: String,
        /// The version the caller expected.
        expected: u64,
        /// The current version.
        actual: u64,
    },

    /// The task is leased to another owner, or the caller's lease or attempt is stale.
    #[error("task {id:?}: {reason}")]
    LeaseMismatch {
        /// The task.
        id: String,
        /// What does not match.
        reason: String,
    },

    /// A task may not start now: its kind is paused, or at its concurrency or rate limit.
    /// Nothing was written; try again later (after `retry_after_ms`, when given).
    #[error("task {id:?} of kind {kind:?} cannot start now: {reason}")]
    Throttled {
        /// The task.
        id: String,
        /// Its kind.
        kind: String,
        /// Which rule holds it back.
        reason: String,
        /// When a rate limit holds it back: how long until a start fits.
        retry_after_ms: Option<u64>,
    },

    /// A caller-supplied value is not acceptable.
    #[error("invalid input{}: {reason}", at.as_ref().map(|a| format!(" at {a}")).unwrap_or_default())]
    InvalidInput {
        /// Where: a JSON path, a field name or a task id.
        at: Option<String>,
        /// What is wrong.
        reason: String,
    },

    /// A whole input (an import file) was rejected; every problem found is listed (up to a
    /// limit, then counted).
    #[error("{total} problem(s) in {source_name}:\n{}", problems.join("\n"))]
    InvalidDocument {
        /// The input (a file name, or "stdin").
        source_name: String,
        /// The problems, each naming its JSON path (and line/column where known); when more
        /// were found than are listed, a last line counts the rest.
        problems: Vec<String>,
        /// How many problems were found in all.
        total: usize,
    },
}

impl Error {
    /// Builds an [`Error::Io`] from an operation, a path and an I/O error.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(
        file: impl Into<PathBuf>,
        offset: Option<u64>,
        lsn: Option<u64>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            lsn,
            reason: reason.into(),
        }
    }

    /// True when the error means the bytes on disk are damaged (exit code 3 in the CLI).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. } | Error::UnsupportedVersion { .. }
        )
    }

    /// A copy of this error, for handing one failure to several callers (the log's poison).
    /// Every field is kept but a codec's own error (its text is in `reason`); an I/O error is rebuilt from its OS code when it has one (so its
    /// kind and text are the same), else from its kind and text.
    pub(crate) fn duplicate(&self) -> Error {
        fn io_copy(e: &std::io::Error) -> std::io::Error {
            match e.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(e.kind(), e.to_string()),
            }
        }
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: io_copy(source),
            },
            Error::Locked {
                path,
                lock_file,
                holder,
                waited_ms,
            } => Error::Locked {
                path: path.clone(),
                lock_file: lock_file.clone(),
                holder: holder.clone(),
                waited_ms: *waited_ms,
            },
            Error::Poisoned { cause, source } => Error::Poisoned {
                cause: cause.clone(),
                source: source.clone(),
            },
            Error::Closed => Error::Closed,
            Error::ReadOnly => Error::ReadOnly,
            Error::Corrupt {
                file,
                offset,
                lsn,
                reason,
            } => Error::Corrupt {
                file: file.clone(),
                offset: *offset,
                lsn: *lsn,
                reason: reason.clone(),
            },
            Error::UnsupportedVersion {
                file,
                found,
                supported,
            } => Error::UnsupportedVersion {
                file: file.clone(),
                found: *found,
                supported: *supported,
            },
            Error::TooLarge { what, len, max } => Error::TooLarge {
                what,
                len: *len,
                max: *max,
            },
            // NOTE: the codec's own error cannot be cloned; its text is already in `reason`.
            Error::Codec { what, reason, .. } => Error::Codec {
                what: what.clone(),
                reason: reason.clone(),
                source: None,
            },
            Error::NotFound { id } => Error::NotFound { id: id.clone() },
            Error::AlreadyExists { id } => Error::AlreadyExists { id: id.clone() },
            Error::InvalidTransition {
                id,
                action,
                from,
                to,
            } => Error::InvalidTransition {
                id: id.clone(),
                action,
                from: *from,
                to: *to,
            },
            Error::Conflict {
                id,
                expected,
                actual,
            } => Error::Conflict {
                id: id.clone(),
                expected: *expected,
                actual: *actual,
            },
            Error::LeaseMismatch { id, reason } => Error::LeaseMismatch {
                id: id.clone(),
                reason: reason.clone(),
            },
            Error::Throttled {
                id,
                kind,
                reason,
                retry_after_ms,
            } => Error::Throttled {
                id: id.clone(),
                kind: kind.clone(),
                reason: reason.clone(),
                retry_after_ms: *retry_after_ms,
            },
            Error::InvalidInput { at, reason } => Error::InvalidInput {
                at: at.clone(),
                reason: reason.clone(),
            },
            Error::InvalidDocument {
                source_name,
                problems,
                total,
            } => Error::InvalidDocument {
                source_name: source_name.clone(),
                problems: problems.clone(),
                total: *total,
            },
        }
    }

    /// The error every call gets once the log or store is poisoned by `first`.
    pub(crate) fn poisoned_by(first: &(String, Arc<Error>)) -> Error {
        Error::Poisoned {
            cause: first.0.clone(),
            source: Some(first.1.clone()),
        }
    }

    // ----- wal additions below (kept apart so parallel work merges cleanly) -----------------
}

/// The message of [`Error::Locked`]: who holds the store, how long this one waited, and what to
/// do about it.
fn locked_message(
    path: &std::path::Path,
    lock_file: &std::path::Path,
    holder: Option<&str>,
    waited_ms: u64,
) -> String {
    let who = holder.unwrap_or("another process");
    let waited = if waited_ms == 0 {
        String::new()
    } else {
        format!(" after waiting {:.1} s", waited_ms as f64 / 1000.0)
    };
    format!(
        "the store at {} is locked by another writer ({who}; lock file {}){waited}: wait for it \
         to finish, give it time with `--wait SECS` (StoreOptions::lock_timeout), or send the \
         command through its server",
        path.display(),
        lock_file.display()
    )
}

/// What to do about an OS error, by kind: the part of the message the OS error itself lacks.
fn io_hint(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind as K;
    match kind {
        K::StorageFull | K::QuotaExceeded => {
            "; free space on that volume, then reopen the store (acknowledged writes are kept)"
        }
        K::PermissionDenied => "; give this user access to that path (or run as its owner)",
        K::ReadOnlyFilesystem => {
            "; that volume is mounted read-only: remount it read-write or use another directory"
        }
        K::NotFound => "; check that the path exists and is reachable",
        K::AlreadyExists | K::NotADirectory => {
            "; a file is in the way: the store needs a directory there"
        }
        _ => "",
    }
}

#[cfg(test)]
mod source_chain_tests {
    //! Errors keep their source (issue #21). Goal: every variant that wraps another error hands
    //! it out through `std::error::Error::source`, so a caller can walk down to the OS error or
    //! the codec's own error. Method: each variant produced by a real failing call (a missing
    //! file, a payload postcard cannot decode, JSON serde cannot read, an fsync that fails on
    //! the simulated disk), then the chain walked.

    use std::error::Error as StdError;
    use std::sync::Arc;

    use super::Error;

    fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
        let mut out = vec![e];
        let mut at = e;
        while let Some(next) = at.source() {
            out.push(next);
            at = next;
        }
        out
    }

    #[test]
    fn io_hands_out_the_os_error() {
        let missing = std::fs::File::open("/definitely/not/here").unwrap_err();
        let e = Error::io("open", "/definitely/not/here", missing);
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    }

    #[test]
    fn codec_hands_out_postcards_error() {
        // Version byte 1, then a body postcard cannot read as an event.
        let e = crate::task::wire::decode_event(&[1, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(e, Error::Codec { .. }), "{e}");
        let inner = e
            .source()
            .expect("a codec error should keep postcard's error");
        // The codec's own error, not a wrapper of it.
        assert!(
            inner.downcast_ref::<postcard::Error>().is_some(),
            "{inner:?}"
        );
    }

    #[test]
    fn codec_hands_out_serde_jsons_error() {
        let bad = serde_json::from_str::<u8>("[").unwrap_err();
        let e = Error::Codec {
            what: "json".into(),
            reason: bad.to_string(),
            source: Some(Box::new(bad)),
        };
        let inner = e
            .source()
            .expect("a codec error should keep serde_json's error");
        assert!(inner.downcast_ref::<serde_json::Error>().is_some());
    }

    #[test]
    fn poisoned_hands_out_the_first_failure_down_to_the_os_error() {
        use crate::wal::sim::SimStorage;
        use crate::wal::{Wal, WalOptions};

        let sim = SimStorage::new(1);
        let options = WalOptions {
            preallocate: false,
            ..WalOptions::default()
        };
        let (wal, _) = Wal::open_with_storage(Arc::new(sim.clone()), "/w", options).unwrap();
        sim.fail_nth_sync(1);
        let first = wal.append(b"a").unwrap_err();
        let later = wal.append(b"b").unwrap_err();
        assert!(matches!(later, Error::Poisoned { .. }), "{later}");
        let links = chain(&later);
        // Poisoned -> the first failure (a copy, same text) -> the OS error.
        assert!(links.len() >= 3, "{links:?}");
        assert_eq!(links[1].to_string(), first.to_string());
        assert!(links[1].downcast_ref::<Arc<Error>>().is_some());
        let os = links
            .iter()
            .find_map(|e| e.downcast_ref::<std::io::Error>())
            .expect("the chain should reach the io::Error");
        assert!(os.to_string().contains("simulated EIO"), "{os}");
    }

    #[test]
    fn a_poisoned_store_hands_out_the_first_failure_too() {
        use crate::wal::sim::SimStorage;

        let sim = SimStorage::new(2);
        let options = crate::StoreOptions::new()
            .storage(Arc::new(sim.clone()))
            .preallocate(false);
        let store = crate::Store::open_with("/s", options).unwrap();
        sim.fail_nth_sync(1);
        assert!(store.submit(crate::NewTask::new("a")).is_err());
        let later = store.submit(crate::NewTask::new("b")).unwrap_err();
        assert!(matches!(later, Error::Poisoned { .. }), "{later}");
        let links = chain(&later);
        assert!(
            links
                .iter()
                .any(|e| e.downcast_ref::<std::io::Error>().is_some()),
            "{links:?}"
        );
        // One level of poison, not "poisoned by poisoned by ...".
        assert_eq!(later.to_string().matches("poisoned").count(), 1, "{later}");
    }

    #[test]
    fn a_duplicate_keeps_every_field_and_the_os_code() {
        let e = Error::io("fsync", "/x", std::io::Error::from_raw_os_error(5));
        let d = e.duplicate();
        assert_eq!(d.to_string(), e.to_string());
        let os = d.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(os.and_then(|e| e.raw_os_error()), Some(5));
    }
}
