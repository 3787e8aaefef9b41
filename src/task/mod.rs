//! `task`: the domain. The task model, its events, the state machine and how events apply.
//! Knows nothing of files.

testing_pub_mod!(apply);
pub mod event;
pub mod limits;
pub mod model;
pub mod state;
pub mod time;
testing_pub_mod!(wire);

pub use event::{Event, EventKind};
pub use model::{
    Checkpoint, Lease, META_NOT_BEFORE, NewTask, Output, OutputKind, Progress, Task, TaskUpdate,
};
pub use state::TaskState;
pub use time::Timestamp;
