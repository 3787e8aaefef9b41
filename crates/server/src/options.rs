//! What a server allows: its token, where server-side files may be read and written, and the
//! limits on everything a request can ask for.

use std::path::PathBuf;
use std::time::Duration;

/// Options of [`crate::router`]. `Default` gives a loopback-only server with no token and the
/// limits below.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Bearer token required on every route but `/livez` (None: no token; only allowed when
    /// the server listens on loopback, which `tasklog serve` enforces).
    pub token: Option<String>,
    /// The only directory server-side `path`s of export and import may name (seed 000's
    /// `/api/tasks/export` and `/api/tasks/import`). None: such requests are refused.
    pub files_dir: Option<PathBuf>,
    /// Largest request body accepted (413 beyond). Default 64 MiB.
    pub max_body_bytes: usize,
    /// Largest page a listing returns; larger `limit`s are refused with 400. Default 1,000.
    pub max_page_size: usize,
    /// A request that takes longer is answered 503 (long-polls and SSE streams excepted: they
    /// have their own bounds). Default 30 s.
    pub request_timeout: Duration,
    /// Most SSE subscribers at once (503 beyond). Default 64.
    pub max_sse_subscribers: usize,
    /// Longest long-poll `wait` a worker's claim may ask for. Default 60 s.
    pub max_claim_wait: Duration,
    /// How often expired leases are looked for and recovered by the store's policy. Default 1 s.
    pub lease_check_interval: Duration,
    /// How often [`crate::serve()`] fires due schedules. Default 1 s; `Duration::ZERO`: this
    /// server fires none (another server or runtime does).
    pub schedule_tick_interval: Duration,
    /// Scheduled online backups (`tasklog serve --backup-every`). Default: none.
    pub backups: Option<BackupSchedule>,
}

/// Online backups taken while the server runs, rotated in one directory
/// (`tasklog::store::backup::backup_rotate`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackupSchedule {
    /// Time between backups; the first is taken one period after the start.
    pub every: Duration,
    /// Complete backups kept, newest first (0: all).
    pub keep: usize,
    /// The directory of rotated backups (`<dir>/backup-<UTC time>`).
    pub dir: PathBuf,
}

impl BackupSchedule {
    /// A schedule: every `every`, keeping `keep`, in `dir`.
    pub fn new(every: Duration, keep: usize, dir: PathBuf) -> Self {
        BackupSchedule { every, keep, dir }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            token: None,
            files_dir: None,
            max_body_bytes: 64 << 20,
            max_page_size: 1_000,
            request_timeout: Duration::from_secs(30),
            max_sse_subscribers: 64,
            max_claim_wait: Duration::from_secs(60),
            lease_check_interval: Duration::from_secs(1),
            schedule_tick_interval: Duration::from_secs(1),
            backups: None,
        }
    }
}

impl ServerOptions {
    /// Sets the bearer token.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Sets how often due schedules are fired (`Duration::ZERO`: never).
    #[must_use]
    pub fn schedule_tick_interval(mut self, every: Duration) -> Self {
        self.schedule_tick_interval = every;
        self
    }
    /// Sets the directory server-side paths may name.
    #[must_use]
    pub fn files_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.files_dir = Some(dir.into());
        self
    }
}
