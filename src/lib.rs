//! tasklog: durable task state with a complete audit trail.
// NOTE: `deny`, not `forbid`, so that the one module that memory-maps segments can allow it
// locally with a SAFETY comment.
#![deny(unsafe_code)]

pub mod error;
pub mod runtime;
pub mod store;
pub mod task;
pub mod wal;

pub use error::{Error, Result};
pub use store::{Store, StoreOptions};
pub use task::{NewTask, Task, TaskState};
