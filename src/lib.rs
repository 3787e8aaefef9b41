//! tasklog: durable task state with a complete audit trail.
//!
//! Every change of a task is an event appended to a CRC-framed, segmented write-ahead log and
//! acknowledged once an fdatasync covering it returned; opening a store rebuilds every task and
//! its full history from the newest snapshot plus the log after it.
//!
//! # Quick start
//!
//! ```
//! use tasklog::{NewTask, Store, TaskState};
//!
//! # fn main() -> tasklog::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! let task = store.submit(NewTask::new("resize images").tag("batch"))?;
//! store.start(&task.id)?;
//! store.progress(&task.id, 40, Some("resize"), None)?;
//! let done = store.complete(&task.id, Some(serde_json::json!({"files": 300})))?;
//! assert_eq!(done.state, TaskState::Completed);
//! store.close()?;
//!
//! // Reopening rebuilds the task and its whole history.
//! let store = Store::open(dir.path())?;
//! let kinds: Vec<&str> = store.history(&task.id)?.iter().map(|e| e.kind).collect();
//! assert_eq!(kinds, ["created", "started", "progress", "completed"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! - [`wal`]: bytes on disk — frames, segments, group commit, replay, torn-tail handling.
//! - [`task`]: the domain — tasks, events, the state machine. Knows nothing of files.
//! - [`store`]: open/recover, snapshots, queries, statistics, retention, subscriptions, leases.
//! - [`runtime`]: handlers, worker pool, retries, crash recovery; uses only the store's API.
//! - `export`: JSON/CSV out and JSON in.
//!
//! # Crate features
//!
//! No default features; the library pulls in neither tokio nor clap (the HTTP server and the
//! `tasklog` binary are the `tasklog-server` and `tasklog-cli` crates).
//!
//! - `openapi`: OpenAPI schemas (utoipa) for the public types, used by the server crate.
//! - `testing`: exposes internals for tests, fuzz targets and benches at their usual paths
//!   (the frame, segment, snapshot and record codecs, the simulated disk `wal::sim`, the
//!   storage seam, `store::State`, the fuzzing entry points), and lets tests build the
//!   `Change` variants that write history (`Import`, `Historical`, `Interrupt`). Not covered
//!   by semver; an application never needs it (docs/design.md, "Public API").
// NOTE: `deny`, not `forbid`, so that the one module that memory-maps segments can allow it
// locally with a SAFETY comment.
#![deny(unsafe_code)]
#![deny(missing_docs)]

/// Declares, with the `testing` feature, a module `pub` that is crate-private without it (that
/// declaration is written out beside each use), at the same path either way: tests, fuzz
/// targets and benches reach the codecs, the simulated disk and the storage seam by the paths
/// they always used, while library users see only the curated surface (docs/design.md,
/// "Public API").
// NOTE: the crate-private declaration stays outside the macro so that cargo-mutants, which
// finds source files by their `mod` items and does not look inside macro calls, mutates these
// modules (it skipped all 21 while both declarations were in here), and lists each file once.
// Without `testing`, helpers that exist only for tests are unused, hence `dead_code`.
macro_rules! testing_pub_mod {
    ($name:ident) => {
        #[cfg(feature = "testing")]
        pub mod $name;
    };
}

/// The same for one item (`fn`, `use`, `struct`, `const`, ...), also inside an `impl`.
macro_rules! testing_pub {
    ($(#[$attr:meta])* $kw:ident $($rest:tt)*) => {
        $(#[$attr])*
        #[cfg(feature = "testing")]
        pub $kw $($rest)*
        $(#[$attr])*
        #[cfg(not(feature = "testing"))]
        #[allow(dead_code, unused_imports)]
        pub(crate) $kw $($rest)*
    };
}

pub mod error;
pub mod export;
pub mod runtime;
pub mod store;
pub mod task;
pub mod wal;

/// The README's code blocks, compiled (and the `no_run` ones type-checked) as doctests so the
/// snippets users paste keep working.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

pub use error::{Error, Result};
pub use store::{Durability, Filter, Query, ReadView, Store, StoreOptions};
pub use task::{NewTask, Task, TaskState};
