//! Running a server: bind, record where it listens in the store directory, supervise leases,
//! and shut down gracefully on a signal.

use std::future::Future;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tasklog::Store;

use crate::options::ServerOptions;

/// Where a running server listens, written to `<store>/server.json` while it runs, so that CLI
/// commands on the same directory talk to it instead of opening the store. Never the token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerRecord {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's process id.
    pub pid: u32,
    /// True when requests need a bearer token.
    pub token_required: bool,
}

impl ServerRecord {
    /// The record file of a store directory.
    pub fn path(store_dir: &Path) -> std::path::PathBuf {
        store_dir.join("server.json")
    }
}

/// Serves `store` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (bounded), and closes the store cleanly.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = crate::router(store, options);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
