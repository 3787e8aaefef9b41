//! tasklog, log layer only: the same event bytes appended through `tasklog::wal::Wal`.
//!
//! Built with the `tasklog` cargo feature (the default); without it (`--no-default-features`)
//! every workload reports "not yet wired".
//!
//! W1/W2: `WalOptions::default()` (durable: `Durability::Sync`, segments preallocated,
//! concurrent appenders share an fdatasync through the log's group commit), one `append` per
//! event. W3: `Durability::Buffered`, `append` per event, one `sync()` at the end (timed).
//! W4: `Wal::open` + `replay(1, ..)` rebuilding per-task state (both timed).

#[cfg(not(feature = "tasklog"))]
mod adapter {
    use std::path::Path;

    use crate::event::Event;
    use crate::systems::{NOT_WIRED, Replayed, Res, System, Timed};

    pub struct TasklogLog;

    impl System for TasklogLog {
        fn w1(&self, _: &Path, _: &[Event]) -> Res<Timed> {
            Err(NOT_WIRED.into())
        }
        fn w2(&self, _: &Path, _: &[Event], _: usize) -> Res<Timed> {
            Err(NOT_WIRED.into())
        }
        fn w3(&self, _: &Path, _: &[Event]) -> Res<Timed> {
            Err(NOT_WIRED.into())
        }
        fn w4(&self, _: &Path, _: usize) -> Res<Replayed> {
            Err(NOT_WIRED.into())
        }
    }
}

#[cfg(feature = "tasklog")]
mod adapter {
    use std::path::Path;
    use std::time::Instant;

    use tasklog::wal::{Durability, Wal, WalOptions};

    use crate::event::Event;
    use crate::state::Rebuilt;
    use crate::systems::{Replayed, Res, System, Timed, concurrent, sequential};

    pub struct TasklogLog;

    impl System for TasklogLog {
        fn w1(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
            let (wal, _report) = Wal::open(dir, WalOptions::default())?;
            let before = wal.stats().fsyncs;
            let mut t = sequential(events, |ev| {
                wal.append(ev)?;
                Ok(())
            })?;
            t.fsyncs = Some(wal.stats().fsyncs - before);
            wal.close()?;
            Ok(t)
        }

        fn w2(&self, dir: &Path, events: &[Event], threads: usize) -> Res<Timed> {
            let (wal, _report) = Wal::open(dir, WalOptions::default())?;
            let before = wal.stats().fsyncs;
            let mut t = concurrent(events, threads, |ev| {
                wal.append(ev)?;
                Ok(())
            })?;
            t.fsyncs = Some(wal.stats().fsyncs - before);
            wal.close()?;
            Ok(t)
        }

        fn w3(&self, dir: &Path, events: &[Event]) -> Res<Timed> {
            let options = WalOptions::default().durability(Durability::Buffered);
            let (wal, _report) = Wal::open(dir, options)?;
            let start = Instant::now();
            for ev in events {
                wal.append(ev)?;
            }
            wal.sync()?;
            let elapsed = start.elapsed();
            wal.close()?;
            Ok(Timed {
                elapsed,
                lat_ns: Vec::new(),
                fsyncs: None,
            })
        }

        fn w4(&self, dir: &Path, tasks: usize) -> Res<Replayed> {
            let start = Instant::now();
            let (wal, _report) = Wal::open(dir, WalOptions::default())?;
            let mut state = Rebuilt::with_capacity(tasks);
            wal.replay(1, &mut |_lsn, payload| {
                state.apply_bytes(payload);
                Ok(())
            })?;
            let elapsed = start.elapsed();
            wal.close()?;
            Ok(Replayed::new(elapsed, state))
        }
    }
}

pub use adapter::TasklogLog;
