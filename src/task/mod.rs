//! `task`: the domain. The task model, its events, the state machine and how events apply.
//! Knows nothing of files.

#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod apply;
testing_pub_mod!(apply);
pub mod event;
pub mod limits;
pub mod model;
pub mod state;
pub mod time;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
pub(crate) mod wire;
testing_pub_mod!(wire);

pub use event::{Event, EventKind};
pub use model::{
    Checkpoint, Lease, META_NOT_BEFORE, NewTask, Output, OutputKind, Progress, Task, TaskUpdate,
};
pub use state::TaskState;
pub use time::Timestamp;
