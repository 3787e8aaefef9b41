//! `task`: the domain. The task model, its events, the state machine and how events apply.
//! Knows nothing of files.

pub mod state;
pub use state::TaskState;
