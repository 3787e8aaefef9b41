//! tasklog's log on a NATS JetStream stream: a store whose records are replicated to a
//! 3-node cluster, so an acknowledged change survives the loss of one machine.
//!
//! [`JetStreamLog`] implements `tasklog::store::Log`; open a store over it with
//! `StoreOptions::open_with_log`. One batch of records is one message (format and LSN ↔
//! sequence mapping: docs/format.md, "JetStream log"); every append carries `Nats-Msg-Id` and
//! `Nats-Expected-Last-Sequence`, so a retried append is stored once and a deposed writer
//! cannot append; an append is durable when its ack arrived. Deployment: docs/jetstream.md.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tasklog::{NewTask, StoreOptions};
//! use tasklog_jetstream::{JetStreamLog, JetStreamOptions};
//!
//! # fn main() -> tasklog::Result<()> {
//! let log = JetStreamLog::open(
//!     JetStreamOptions::new("nats://127.0.0.1:4222", "TASKS").create(true),
//! )?;
//! let dir = tempfile::tempdir().expect("a temporary directory");
//! let store = StoreOptions::default().open_with_log(dir.path(), Arc::new(log))?;
//! store.submit(NewTask::new("email"))?;
//! # Ok(())
//! # }
//! ```
//!
//! [`Leadership`] decides which process writes a store: a lease in a JetStream KV bucket,
//! acquired and renewed by compare-and-set on the key's revision (docs/jetstream.md,
//! "Leadership"). The lease is not what keeps the stream safe: a deposed writer's appends are
//! refused by the expected-sequence fence.
//!
//! The crate owns a tokio runtime on a thread of its own; the sync `Log` methods hand work to
//! it over channels, so they can be called from any thread, also from inside another tokio
//! runtime.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::indexing_slicing)]

mod bridge;
pub mod envelope;
mod lease;
mod log;
mod options;
mod replay;
mod settings;
mod snapshots;

pub use lease::{Holder, LEASE_MIN, LEASE_VALUE_BYTES_MAX, Leadership, LeadershipOptions};
pub use log::{HEADERS_BYTES_MAX, JetStreamLog, SERVER_VERSION_MIN, WRITER_ID_BYTES_MAX};
pub use options::JetStreamOptions;
pub use snapshots::SNAPSHOTS_KEPT;
