//! How to reach the stream and what to create when it is missing.

use std::time::Duration;

/// Where the log lives and how it talks to it.
///
/// ## Defaults
/// `subject` = `tasklog.<stream>`, `replicas` = 3, `create` = false, `writer_id` = a fresh
/// random id per open, `ack_timeout` = 5 s, `request_timeout` = 10 s, `retry_horizon` = 60 s, `duplicate_window` =
/// 2 min (JetStream's default; only used when the stream is created), `truncate` = true,
/// `snapshot_bucket` = `<stream>_snapshots`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JetStreamOptions {
    /// NATS server URLs, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    pub urls: String,
    /// The stream's name.
    pub stream: String,
    /// The one subject the log publishes to (the stream is created over exactly it).
    pub subject: String,
    /// Replicas when the stream is created (3 for a quorum that survives one node).
    pub replicas: usize,
    /// Create the stream, and the object store of its snapshots and settings, when they do
    /// not exist (otherwise a missing stream is an error; the object store is then created
    /// at the first snapshot or setting kept).
    pub create: bool,
    /// Prefix of every `Nats-Msg-Id` (`<writer_id>:<first LSN>`).
    pub writer_id: String,
    /// How long one publish waits for its ack before it counts as ambiguous and is settled.
    pub ack_timeout: Duration,
    /// How long a request to the JetStream API (stream info, a message read, a purge) waits.
    pub request_timeout: Duration,
    /// How long an append keeps settling (re-publishing, checking the stream) before it gives
    /// up and poisons the log. Keep it below the stream's duplicate window.
    pub retry_horizon: Duration,
    /// The stream's duplicate window when it is created.
    pub duplicate_window: Duration,
    /// Purge messages below the newest snapshot when the store asks to
    /// (`Log::truncate_before`, only after the snapshot was kept in the object store). Off,
    /// the stream keeps every message, for readers that should replay it all.
    pub truncate: bool,
    /// The object store bucket that keeps the store's snapshots beside the log (created,
    /// file storage, `replicas`, at the first snapshot).
    pub snapshot_bucket: String,
}

impl JetStreamOptions {
    /// Options for `stream` on the servers at `urls`, with the defaults above.
    pub fn new(urls: impl Into<String>, stream: impl Into<String>) -> Self {
        let stream = stream.into();
        JetStreamOptions {
            urls: urls.into(),
            subject: format!("tasklog.{stream}"),
            snapshot_bucket: format!("{stream}_snapshots"),
            stream,
            replicas: 3,
            create: false,
            writer_id: uuid::Uuid::new_v4().simple().to_string(),
            ack_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry_horizon: Duration::from_secs(60),
            duplicate_window: Duration::from_secs(120),
            truncate: true,
        }
    }

    /// Sets [`JetStreamOptions::replicas`].
    #[must_use]
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets [`JetStreamOptions::create`].
    #[must_use]
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Sets [`JetStreamOptions::writer_id`].
    #[must_use]
    pub fn writer_id(mut self, writer_id: impl Into<String>) -> Self {
        self.writer_id = writer_id.into();
        self
    }

    /// Sets [`JetStreamOptions::subject`].
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Sets [`JetStreamOptions::ack_timeout`].
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets [`JetStreamOptions::request_timeout`].
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`JetStreamOptions::truncate`].
    #[must_use]
    pub fn truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    /// Sets [`JetStreamOptions::snapshot_bucket`].
    #[must_use]
    pub fn snapshot_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.snapshot_bucket = bucket.into();
        self
    }

    /// Sets [`JetStreamOptions::retry_horizon`].
    #[must_use]
    pub fn retry_horizon(mut self, horizon: Duration) -> Self {
        self.retry_horizon = horizon;
        self
    }
}

/// The server URLs of a comma-separated list (as `JetStreamOptions::urls` and
/// `LeadershipOptions::urls` take them), blanks left out.
pub(crate) fn server_urls(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}
