//! [`JetStreamLog`]: `store::Log` on one JetStream stream, one message per batch.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{Context, PublishAckFuture};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{
    Config, DiscardPolicy, RawMessageErrorKind, StorageType, Stream,
};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tasklog::store::Log;
use tasklog::wal::{Lsn, Ticket, TruncateReport, WalStats};
use tasklog::{Error, Result};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::bridge::Bridge;
use crate::envelope;
use crate::options::JetStreamOptions;
use crate::replay;

/// Room kept in `max_payload` for the message's headers (`Nats-Msg-Id` with a writer id of up
/// to 128 bytes, `Nats-Expected-Last-Sequence`, and the protocol's header framing).
pub const HEADERS_BYTES_MAX: u64 = 256;
/// The longest writer id (it travels in every message's `Nats-Msg-Id`).
pub const WRITER_ID_BYTES_MAX: usize = 128;

/// The connection, shared by the tasks on the runtime.
pub(crate) struct Conn {
    pub(crate) js: Context,
    pub(crate) stream: Stream,
    pub(crate) opts: JetStreamOptions,
    /// The largest message the server and the stream accept (headers included).
    pub(crate) message_bytes_max: u64,
    /// Where the last replay ended: the next LSN and the sequence that should hold it. A
    /// replica follows by replaying from there again and again; the hint spares it the
    /// binary search for the starting sequence (checked: the batch there must start at it).
    pub(crate) replay_hint: parking_lot::Mutex<Option<(Lsn, u64)>>,
}

impl Conn {
    /// The name errors use for the stream, in the place of a file.
    pub(crate) fn place(&self) -> PathBuf {
        place(&self.opts)
    }
    pub(crate) fn at_seq(&self, seq: u64) -> PathBuf {
        PathBuf::from(format!(
            "jetstream stream {} sequence {seq}",
            self.opts.stream
        ))
    }
}

pub(crate) fn place(opts: &JetStreamOptions) -> PathBuf {
    PathBuf::from(format!("jetstream stream {} at {}", opts.stream, opts.urls))
}

/// A NATS failure as an [`Error::Io`] naming the stream.
pub(crate) fn nats_error(
    op: &'static str,
    opts: &JetStreamOptions,
    e: impl std::fmt::Display,
) -> Error {
    let text = e.to_string();
    let kind = if text.contains("timed out") {
        std::io::ErrorKind::TimedOut
    } else {
        std::io::ErrorKind::Other
    };
    Error::io(op, place(opts), std::io::Error::new(kind, text))
}

/// One message on its way to the stream: the batches queued while the previous message was
/// in flight, merged (their LSNs are contiguous; one message is stored whole or not at all).
struct Pending {
    first: Lsn,
    last: Lsn,
    /// The stream sequence this message must follow (`Nats-Expected-Last-Sequence`); it
    /// lands at `expected + 1`.
    expected: u64,
    msg_id: String,
    payload: Bytes,
}

/// One store batch, queued by `submit` for the writer task.
struct Queued {
    first: Lsn,
    records: Vec<Bytes>,
}

impl Queued {
    fn last(&self) -> Lsn {
        self.first + self.records.len() as u64 - 1
    }
}

struct State {
    next_lsn: Lsn,
    first_lsn: Lsn,
    durable_lsn: Lsn,
    poison: Option<(String, Arc<Error>)>,
    closed: bool,
    appends: u64,
    bytes: u64,
    publish: Option<UnboundedSender<Queued>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn poison(&self, e: Error) {
        let mut st = self.state.lock();
        // NOTE: after `close` the runtime's tasks are dropped on purpose; that is no failure.
        if st.poison.is_none() && !st.closed {
            tracing::error!(error = %e, "JetStream log poisoned");
            st.poison = Some((e.to_string(), Arc::new(e)));
        }
        self.changed.notify_all();
    }
}

/// A `store::Log` on a JetStream stream: the store's records replicated to a NATS cluster.
///
/// Open it, then open a store over it with `StoreOptions::open_with_log`. See docs/jetstream.md
/// for the deployment it needs (3 servers with `sync_interval: always`) and docs/format.md
/// ("JetStream log") for the message format and the LSN ↔ sequence mapping.
pub struct JetStreamLog {
    bridge: Bridge,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl JetStreamLog {
    /// Connects, checks (or creates) the stream and learns the next LSN from its last
    /// message. Errors name the stream and servers.
    pub fn open(opts: JetStreamOptions) -> Result<JetStreamLog> {
        if opts.writer_id.is_empty() || opts.writer_id.len() > WRITER_ID_BYTES_MAX {
            return Err(Error::InvalidInput {
                at: Some("JetStreamOptions::writer_id".into()),
                reason: format!("must be 1 to {WRITER_ID_BYTES_MAX} bytes"),
            });
        }
        let bridge = Bridge::start()?;
        let (conn, start) = bridge.call(connect(opts))?;
        let conn = Arc::new(conn);
        let (publish_tx, publish_rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_lsn: start.next_lsn,
                first_lsn: start.first_lsn,
                durable_lsn: start.next_lsn - 1,
                poison: None,
                closed: false,
                appends: 0,
                bytes: 0,
                publish: Some(publish_tx),
            }),
            changed: Condvar::new(),
        });
        bridge.spawn(writer(
            conn.clone(),
            shared.clone(),
            publish_rx,
            start.last_seq,
        ))?;
        tracing::info!(
            stream = %conn.opts.stream,
            next_lsn = start.next_lsn,
            last_seq = start.last_seq,
            "JetStream log open"
        );
        Ok(JetStreamLog {
            bridge,
            conn,
            shared,
        })
    }

    /// The writer id in this log's `Nats-Msg-Id`s.
    pub fn writer_id(&self) -> &str {
        &self.conn.opts.writer_id
    }

    /// The largest message this log sends (the server's `max_payload`, or the stream's
    /// `max_msg_size` when smaller); a batch is refused with `TooLarge` above it.
    pub fn message_bytes_max(&self) -> u64 {
        self.conn.message_bytes_max
    }

    fn check_open(st: &State) -> Result<()> {
        if st.closed {
            return Err(Error::Closed);
        }
        if let Some(first) = &st.poison {
            return Err(Error::Poisoned {
                cause: first.0.clone(),
                source: Some(first.1.clone()),
            });
        }
        Ok(())
    }
}

/// The oldest server accepted: 2.10 brought `sync_interval: always` (docs/jetstream.md).
pub const SERVER_VERSION_MIN: (u32, u32) = (2, 10);

/// Whether a server's version string ("2.15.1", "2.11.0-beta.1") is at least
/// [`SERVER_VERSION_MIN`]; an unreadable one is refused.
fn version_supported(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= SERVER_VERSION_MIN,
        _ => false,
    }
}

/// What `open` learns from the stream.
struct Start {
    next_lsn: Lsn,
    first_lsn: Lsn,
    last_seq: u64,
}

async fn connect(opts: JetStreamOptions) -> Result<(Conn, Start)> {
    let urls = crate::options::server_urls(&opts.urls);
    let client = async_nats::ConnectOptions::new()
        .name(format!("tasklog {}", opts.writer_id))
        .connection_timeout(Duration::from_secs(10))
        .connect(urls)
        .await
        .map_err(|e| nats_error("connect to", &opts, e))?;
    let version = client.server_info().version;
    if !version_supported(&version) {
        return Err(Error::InvalidInput {
            at: Some(format!("the NATS server at {}", opts.urls)),
            reason: format!(
                "version {version}: tasklog needs {}.{} or newer (older servers cannot fsync \
                 before acking, and before 2.9.21 the expected-sequence fence races)",
                SERVER_VERSION_MIN.0, SERVER_VERSION_MIN.1
            ),
        });
    }
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(opts.request_timeout)
        .build(client.clone());
    let stream = if opts.create {
        js.get_or_create_stream(Config {
            name: opts.stream.clone(),
            subjects: vec![opts.subject.clone()],
            storage: StorageType::File,
            num_replicas: opts.replicas,
            duplicate_window: opts.duplicate_window,
            // Reads go to the leader (no read-your-writes from followers), and messages are
            // only ever removed from the front, by `truncate_before`.
            allow_direct: false,
            deny_delete: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("create the stream", &opts, e))?
    } else {
        js.get_stream(&opts.stream)
            .await
            .map_err(|e| nats_error("look up the stream", &opts, e))?
    };
    let info = stream.cached_info().clone();
    let invalid = |reason: String| Error::InvalidInput {
        at: Some(format!("jetstream stream {}", opts.stream)),
        reason,
    };
    if info.config.storage != StorageType::File {
        return Err(invalid(
            "uses memory storage: an acknowledged append would not survive a restart of the \
             servers; tasklog needs file storage"
                .into(),
        ));
    }
    if !info.config.subjects.contains(&opts.subject) {
        return Err(invalid(format!(
            "does not hold the subject {:?} (it holds {:?})",
            opts.subject, info.config.subjects
        )));
    }
    if info.config.num_replicas < opts.replicas {
        tracing::warn!(
            stream = %opts.stream,
            replicas = info.config.num_replicas,
            wanted = opts.replicas,
            "the stream has fewer replicas than configured"
        );
    }
    let mut message_bytes_max = client.server_info().max_payload as u64;
    if info.config.max_message_size > 0 {
        message_bytes_max = message_bytes_max.min(info.config.max_message_size as u64);
    }
    let conn = Conn {
        js,
        stream,
        opts,
        message_bytes_max,
        replay_hint: parking_lot::Mutex::new(None),
    };
    if conn.opts.create {
        // With the stream, not at the first snapshot: a replica opening while a new
        // three-replica bucket still elects its leader would wait out a request timeout.
        crate::snapshots::bucket(&conn, true).await?;
    }
    let state = info.state;
    let start = if state.messages == 0 {
        if state.last_sequence != 0 {
            return Err(Error::corrupt(
                conn.place(),
                None,
                None,
                format!(
                    "the stream has held {} messages but holds none now (purged outside \
                     tasklog?): the next LSN cannot be learned",
                    state.last_sequence
                ),
            ));
        }
        Start {
            next_lsn: 1,
            first_lsn: 1,
            last_seq: 0,
        }
    } else {
        let last = replay::batch_at(&conn, state.last_sequence).await?;
        let first = replay::batch_at(&conn, state.first_sequence).await?;
        Start {
            next_lsn: last.1 + 1,
            first_lsn: first.0,
            last_seq: state.last_sequence,
        }
    };
    Ok((conn, start))
}

/// Appends the queued batches in LSN order, ONE message in flight at a time: the batches
/// queued meanwhile go out together in the next message (group commit), as many as fit in
/// one message.
///
/// Why not pipeline messages: each message's fence (`Nats-Expected-Last-Sequence`) assumes the
/// previous one landed where this writer expects. If another writer's message took that
/// slot, the previous one is refused, but a next one already sent expects exactly the foreign
/// message's sequence and is stored: a fork, two records with one LSN (the failover test found
/// it). `Nats-Expected-Last-Msg-Id` would close it, but a mismatch on it is a "critical write
/// error" that stops a clustered stream in nats-server 2.15.1. With one message in flight,
/// every message follows one of this writer's own, acknowledged.
async fn writer(
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    mut queue: UnboundedReceiver<Queued>,
    mut last_seq: u64,
) {
    // IMPORTANT: if this task is dropped (the runtime stopped) while batches wait, their
    // waiters must not hang: the guard poisons the log on the way out.
    let guard = PoisonOnDrop(shared.clone());
    let room = conn.message_bytes_max.saturating_sub(HEADERS_BYTES_MAX);
    let mut carried: Option<Queued> = None;
    loop {
        let head = match carried.take() {
            Some(q) => q,
            None => match queue.recv().await {
                Some(q) => q,
                None => break,
            },
        };
        if shared.state.lock().poison.is_some() {
            continue;
        }
        let mut merged = vec![head];
        let mut len = envelope::encoded_len(&refs(&merged));
        while let Ok(next) = queue.try_recv() {
            // Its records only: header and trailer are counted once, in `len`.
            let more = envelope::encoded_len(&refs(std::slice::from_ref(&next)))
                - (envelope::HEADER_LEN + envelope::TRAILER_LEN) as u64;
            if len + more > room {
                carried = Some(next);
                break;
            }
            len += more;
            merged.push(next);
        }
        let (Some(first), Some(last)) = (
            merged.first().map(|q| q.first),
            merged.last().map(Queued::last),
        ) else {
            continue;
        };
        let records = refs(&merged);
        let p = Pending {
            first,
            last,
            expected: last_seq,
            msg_id: format!("{}:{first}", conn.opts.writer_id),
            payload: Bytes::from(envelope::encode(first, &records)),
        };
        let sent = conn
            .js
            .send_publish(conn.opts.subject.clone(), message(&p))
            .await;
        let acked = match sent {
            Ok(ack) => await_ack(&conn, ack).await,
            Err(e) => Err(e.to_string()),
        };
        match settle(&conn, &p, acked).await {
            Ok(seq) => {
                last_seq = seq;
                let mut st = shared.state.lock();
                st.durable_lsn = st.durable_lsn.max(p.last);
                shared.changed.notify_all();
            }
            Err(e) => shared.poison(e),
        }
    }
    std::mem::forget(guard);
}

/// The records of `batches`, in order.
fn refs(batches: &[Queued]) -> Vec<&[u8]> {
    batches
        .iter()
        .flat_map(|b| b.records.iter().map(|r| &r[..]))
        .collect()
}

fn message(p: &Pending) -> PublishMessage {
    PublishMessage::build()
        .payload(p.payload.clone())
        .message_id(&p.msg_id)
        .expected_last_sequence(p.expected)
}

/// The ack of one publish, or why there is none within `ack_timeout` (ambiguous then: the
/// message may still be stored).
async fn await_ack(conn: &Conn, ack: PublishAckFuture) -> std::result::Result<PublishAck, String> {
    match tokio::time::timeout(conn.opts.ack_timeout, ack).await {
        Ok(Ok(ack)) => Ok(ack),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no ack within {:?}", conn.opts.ack_timeout)),
    }
}

struct PoisonOnDrop(Arc<Shared>);

impl Drop for PoisonOnDrop {
    fn drop(&mut self) {
        self.0.poison(Error::Closed);
    }
}

/// Where a batch's message should be, as the stream's leader sees it.
enum Slot {
    /// Our message is there (stored, maybe by an earlier attempt).
    Ours(u64),
    /// Another writer's message, or none where one must be: this writer is deposed.
    Foreign(String),
    /// Free: the stream's last sequence is still the one the batch expects.
    Free,
    /// Could not be read now (no leader during an election, a timeout).
    Unknown(String),
}

/// Settles one batch: its ack, or, after an error or a timeout (ambiguous: it may be stored),
/// a look at the sequence it must land at, and a re-publish with the same `Nats-Msg-Id` and
/// the same expected last sequence (so it can be stored at most once, even past the dedup
/// window) until stored, refused by a fence, or `retry_horizon` passed.
async fn settle(
    conn: &Conn,
    p: &Pending,
    first: std::result::Result<PublishAck, String>,
) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + conn.opts.retry_horizon;
    let mut attempt = first;
    let mut delay = Duration::from_millis(50);
    let mut attempts = 1u32;
    loop {
        let why = match attempt {
            Ok(ack) if ack.sequence == p.expected + 1 => return Ok(ack.sequence),
            Ok(ack) => {
                return Err(Error::corrupt(
                    conn.at_seq(ack.sequence),
                    None,
                    Some(p.first),
                    format!(
                        "the batch of LSNs {}..={} was acknowledged at sequence {}, not at {} \
                         (Nats-Msg-Id {} reused?)",
                        p.first,
                        p.last,
                        ack.sequence,
                        p.expected + 1,
                        p.msg_id
                    ),
                ));
            }
            Err(e) => e,
        };
        // Bounded like an ack: during an election the API answers nothing for a while, and
        // a re-publish is safe whatever the slot holds.
        let looked = tokio::time::timeout(conn.opts.ack_timeout, slot(conn, p))
            .await
            .unwrap_or_else(|_| Slot::Unknown("no answer from the stream's leader".into()));
        match looked {
            Slot::Ours(seq) => return Ok(seq),
            Slot::Foreign(what) => {
                return Err(Error::io(
                    "append (fenced: another writer appended to the stream)",
                    conn.place(),
                    std::io::Error::other(format!(
                        "the batch of LSNs {}..={} expected the stream's last sequence to be {} \
                         ({why}), but {what}; this writer is deposed and stops writing: reopen \
                         to read what the stream holds",
                        p.first, p.last, p.expected
                    )),
                ));
            }
            Slot::Unknown(e) => {
                tracing::debug!(first_lsn = p.first, error = %e, "cannot read the stream's slot now");
            }
            Slot::Free => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::io(
                "append",
                conn.place(),
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the batch of LSNs {}..={} was not acknowledged within {:?} ({attempts} \
                         attempts; last: {why}); it may or may not be stored: reopen to read \
                         what the stream holds",
                        p.first, p.last, conn.opts.retry_horizon
                    ),
                ),
            ));
        }
        tracing::warn!(first_lsn = p.first, attempts, error = %why, "re-publishing a JetStream batch");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        attempts += 1;
        attempt = match conn
            .js
            .send_publish(conn.opts.subject.clone(), message(p))
            .await
        {
            Ok(ack) => await_ack(conn, ack).await,
            Err(e) => Err(e.to_string()),
        };
    }
}

async fn slot(conn: &Conn, p: &Pending) -> Slot {
    let seq = p.expected + 1;
    // NOTE: the stream's last sequence first, then the message: the other order races with a
    // message being stored between the two reads (seen: "not found", then "last is seq").
    let mut stream = conn.stream.clone();
    let last = match stream.info().await {
        Ok(info) => info.state.last_sequence,
        Err(e) => return Slot::Unknown(e.to_string()),
    };
    if last == p.expected {
        return Slot::Free;
    }
    if last < p.expected {
        return Slot::Foreign(format!(
            "the stream's last sequence is {last}, below what this writer already appended"
        ));
    }
    match conn.stream.get_raw_message(seq).await {
        Ok(m) => {
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned());
            if id.as_deref() == Some(p.msg_id.as_str()) {
                Slot::Ours(seq)
            } else {
                Slot::Foreign(format!(
                    "sequence {seq} holds another message (Nats-Msg-Id {})",
                    id.as_deref().unwrap_or("none")
                ))
            }
        }
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Slot::Foreign(format!(
            "the stream's last sequence is {last} and sequence {seq} is gone"
        )),
        Err(e) => Slot::Unknown(e.to_string()),
    }
}

impl Log for JetStreamLog {
    fn submit(&self, payloads: &[&[u8]]) -> Result<Ticket> {
        let len = envelope::encoded_len(payloads) + HEADERS_BYTES_MAX;
        if len > self.conn.message_bytes_max {
            return Err(Error::TooLarge {
                what: "a JetStream batch message (envelope and headers; raise the servers' \
                       max_payload or write smaller batches)",
                len,
                max: self.conn.message_bytes_max,
            });
        }
        let mut st = self.shared.state.lock();
        Self::check_open(&st)?;
        if payloads.is_empty() {
            return Ok(Ticket::new(st.next_lsn, st.next_lsn - 1));
        }
        let first = st.next_lsn;
        let last = first + payloads.len() as u64 - 1;
        let records: Vec<Bytes> = payloads.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
        let tx = st.publish.as_ref().ok_or(Error::Closed)?;
        tx.send(Queued { first, records })
            .map_err(|_| Error::Closed)?;
        // Assigned only once the batch is queued: a refused batch uses no LSN.
        st.next_lsn = last + 1;
        st.appends += 1;
        st.bytes += bytes;
        Ok(Ticket::new(first, last))
    }

    /// Durable here means acked: JetStream acks once a quorum (2 of 3) stored the message,
    /// and with `sync_interval: always` each of them fsynced it first (docs/jetstream.md).
    fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        let mut st = self.shared.state.lock();
        loop {
            if st.durable_lsn >= lsn {
                return Ok(());
            }
            if let Some(first) = &st.poison {
                return Err(Error::Poisoned {
                    cause: first.0.clone(),
                    source: Some(first.1.clone()),
                });
            }
            if st.closed {
                return Err(Error::Closed);
            }
            if lsn >= st.next_lsn {
                return Err(Error::InvalidInput {
                    at: Some(format!("LSN {lsn}")),
                    reason: format!("never submitted (the next LSN is {})", st.next_lsn),
                });
            }
            self.shared.changed.wait(&mut st);
        }
    }

    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<u64> {
        Self::check_open(&self.shared.state.lock())?;
        replay::replay(&self.bridge, &self.conn, from, f)
    }

    fn truncate_before(&self, lsn: Lsn) -> Result<TruncateReport> {
        Self::check_open(&self.shared.state.lock())?;
        if !self.conn.opts.truncate {
            // Kept for other machines that have no copy of this one's snapshots.
            return Ok(TruncateReport::default());
        }
        let conn = self.conn.clone();
        let (report, first_lsn) = self.bridge.call(replay::truncate(conn, lsn))?;
        if let Some(first_lsn) = first_lsn {
            let mut st = self.shared.state.lock();
            st.first_lsn = st.first_lsn.max(first_lsn);
        }
        Ok(report)
    }

    fn keep_snapshot(&self, lsn: Lsn, path: &std::path::Path) -> Result<()> {
        Self::check_open(&self.shared.state.lock())?;
        let conn = self.conn.clone();
        self.bridge
            .call(crate::snapshots::keep(conn, lsn, path.to_owned()))
    }

    fn fetch_snapshot(&self, newer_than: Lsn, into: &std::path::Path) -> Result<Option<Lsn>> {
        Self::check_open(&self.shared.state.lock())?;
        let conn = self.conn.clone();
        self.bridge
            .call(crate::snapshots::fetch(conn, newer_than, into.to_owned()))
    }

    fn keep_setting(&self, name: &str, bytes: &[u8]) -> Result<()> {
        Self::check_open(&self.shared.state.lock())?;
        let conn = self.conn.clone();
        self.bridge
            .call(crate::settings::keep(conn, name.to_owned(), bytes.to_vec()))
    }

    fn fetch_setting(&self, name: &str, max_bytes: u64) -> Result<Option<Vec<u8>>> {
        Self::check_open(&self.shared.state.lock())?;
        let conn = self.conn.clone();
        self.bridge
            .call(crate::settings::fetch(conn, name.to_owned(), max_bytes))
    }

    fn sync(&self) -> Result<()> {
        let last = self.shared.state.lock().next_lsn - 1;
        if last == 0 {
            return Ok(());
        }
        self.wait_durable(last)
    }

    fn next_lsn(&self) -> Lsn {
        self.shared.state.lock().next_lsn
    }

    fn durable_lsn(&self) -> Lsn {
        self.shared.state.lock().durable_lsn
    }

    fn first_lsn(&self) -> Lsn {
        self.shared.state.lock().first_lsn
    }

    fn stats(&self) -> WalStats {
        let st = self.shared.state.lock();
        let mut stats = WalStats::default();
        stats.first_lsn = st.first_lsn;
        stats.next_lsn = st.next_lsn;
        stats.durable_lsn = st.durable_lsn;
        stats.appends = st.appends;
        stats.bytes = st.bytes;
        stats
    }

    fn close(&self) -> Result<()> {
        let synced = if self.shared.state.lock().poison.is_some() {
            Ok(())
        } else {
            self.sync()
        };
        {
            let mut st = self.shared.state.lock();
            st.closed = true;
            st.publish.take();
            self.shared.changed.notify_all();
        }
        self.bridge.shutdown();
        synced
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_versions_before_2_10_are_refused() {
        for ok in ["2.10.0", "2.15.1", "v2.12.3", "2.11.0-beta.1", "3.0.0"] {
            assert!(super::version_supported(ok), "{ok}");
        }
        for old in ["2.9.10", "2.9.21", "1.4.0", "", "x.y"] {
            assert!(!super::version_supported(old), "{old}");
        }
    }
}
