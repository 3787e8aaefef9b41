//! The tokio runtime this crate owns, on a thread of its own, and the way the sync `Log`
//! methods reach it: a job goes over a channel, the answer comes back over another, and the
//! caller's thread blocks on a std channel. Nothing here calls `block_on` on the caller's
//! thread, so the methods work from any thread, also from inside another tokio runtime (the
//! server calls the store from `spawn_blocking`), where a nested `block_on` would panic.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tasklog::{Error, Result};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct Bridge {
    /// `None` once shut down: the runtime thread then ends and drops its tasks.
    jobs: Mutex<Option<UnboundedSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Bridge {
    pub(crate) fn start() -> Result<Bridge> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the JetStream runtime", "tokio runtime", e))?;
        let (tx, mut rx) = unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("tasklog-jetstream".into())
            .spawn(move || {
                // The runtime lives and is dropped on this thread, never inside another
                // runtime's context (dropping one there panics).
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| Error::io("start the JetStream thread", "tasklog-jetstream", e))?;
        Ok(Bridge {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `fut` on the runtime without waiting for it.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let jobs = self.jobs.lock();
        let tx = jobs.as_ref().ok_or_else(stopped)?;
        tx.send(Box::pin(fut)).map_err(|_| stopped())
    }

    /// Runs `fut` on the runtime and blocks this thread until it is done.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.spawn(async move {
            // The caller may have gone away (its thread panicked): nothing to tell then.
            let _ = tx.send(fut.await);
        })?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Stops the runtime (its tasks are dropped) and waits for its thread to end.
    pub(crate) fn shutdown(&self) {
        self.jobs.lock().take();
        if let Some(thread) = self.thread.lock().take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // NOTE: no join here: a drop may happen on any thread, also inside an async context;
        // closing the channel is enough for the thread to end on its own.
        self.jobs.lock().take();
    }
}

fn stopped() -> Error {
    Error::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server does (a store call on a tokio runtime's thread) must not panic with
    /// "Cannot start a runtime from within a runtime": runs without a NATS server.
    #[test]
    fn a_call_from_inside_another_tokio_runtime_works_and_a_stopped_bridge_says_closed() {
        let bridge = Bridge::start().expect("should start");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("should build a runtime");
        let got = rt.block_on(async { bridge.call(async { Ok(41 + 1) }) });
        assert_eq!(got.expect("should answer"), 42);
        let err = bridge.call(async { Err::<(), _>(Error::ReadOnly) });
        assert!(
            matches!(err, Err(Error::ReadOnly)),
            "errors come back as they are"
        );
        bridge.shutdown();
        assert!(matches!(bridge.call(async { Ok(1) }), Err(Error::Closed)));
        // Dropped inside an async context: no panic (the runtime is dropped on its own thread).
        let bridge = Bridge::start().expect("should start");
        rt.block_on(async move { drop(bridge) });
    }
}
