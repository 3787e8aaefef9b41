//! What every handler shares: the store, the options, the metrics and the event hub.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tasklog::Store;

use crate::error::{ApiResult, Problem};
use crate::events::Hub;
use crate::metrics::Metrics;
use crate::options::ServerOptions;

/// The shared state of a server's handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    options: ServerOptions,
    metrics: Arc<Metrics>,
    hub: Arc<Hub>,
    shutting_down: AtomicBool,
}

impl AppState {
    /// State over `store`. Starts the event hub (one store subscription feeding SSE clients
    /// and waking long-polling workers).
    pub fn new(store: Store, options: ServerOptions) -> AppState {
        let hub = Hub::start(&store);
        AppState {
            inner: Arc::new(Inner {
                store,
                options,
                metrics: Arc::new(Metrics::default()),
                hub,
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// The store (for reads that do not wait on the disk; anything that may wait on fsync goes
    /// through [`AppState::run`]).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The event hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Marks the server as shutting down: new work is answered 503 with `Retry-After`.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.hub.close();
    }

    /// True once shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs a store call on the blocking pool: store calls wait on fsync (group commit), which
    /// must not hold an async worker thread. Concurrent requests share fsyncs this way.
    pub async fn run<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> tasklog::Result<T> + Send + 'static,
    {
        if self.is_shutting_down() {
            return Err(Problem::unavailable(
                "shutting_down",
                "the server is shutting down",
                5,
            ));
        }
        let store = self.inner.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result.map_err(Problem::from),
            Err(join) => Err(Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the store call did not finish: {join}"),
            )),
        }
    }
}
