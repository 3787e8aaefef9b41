//! Leadership of one store: a lease in a JetStream KV bucket (docs/jetstream.md,
//! "Leadership").
//!
//! The bucket holds one key per store, `leader.<stream>`, whose value (JSON) names the holder,
//! the address to redirect clients to, the lease length and when it was acquired. Every write
//! is a compare-and-set on the key's revision, so two contenders can never both succeed from
//! the same revision.
//!
//! Expiry is judged without comparing clocks across machines: the holder renews every
//! lease/3 and counts its lease from the moment it SENT its last successful write (by its own
//! monotonic clock); a contender takes over only after it has watched the SAME revision
//! unchanged for a full lease by its own monotonic clock, counted from its first read of that
//! revision, which came after the holder sent it. So the holder's own deadline passes before
//! a contender may take over (clock rates, not clock values, must agree).
//!
//! The lease is not what keeps the data safe: a paused holder may still have an append in
//! flight when it wakes. That append is refused by the stream, because the new leader's
//! `JetStreamLog` appends with `Nats-Expected-Last-Sequence` and the old writer's expected
//! sequence is then stale (the fence; tests/lease.rs proves it).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::StorageType;
use bytes::Bytes;
use parking_lot::Mutex;
use tasklog::{Error, Result};
use tokio::sync::watch;

use crate::bridge::Bridge;

/// The longest lease value read from the bucket; a longer one is refused as corrupt before it
/// is parsed (values are written by tasklog and are a few hundred bytes).
pub const LEASE_VALUE_BYTES_MAX: usize = 4096;

/// The shortest lease accepted: below it renewals (every lease/3) would race the network.
pub const LEASE_MIN: Duration = Duration::from_millis(300);

/// How to reach the bucket and what to write in it.
#[derive(Clone, Debug)]
pub struct LeadershipOptions {
    pub(crate) urls: String,
    pub(crate) bucket: String,
    pub(crate) stream: String,
    pub(crate) holder: String,
    pub(crate) address: String,
    pub(crate) lease: Duration,
    pub(crate) replicas: usize,
    pub(crate) request_timeout: Duration,
}

impl LeadershipOptions {
    /// Leadership of the store on `stream`, for the process `holder` (unique per process),
    /// with clients redirected to `address`. Defaults: bucket `tasklog_leaders`, lease 10 s,
    /// 3 replicas.
    pub fn new(
        urls: impl Into<String>,
        stream: impl Into<String>,
        holder: impl Into<String>,
        address: impl Into<String>,
    ) -> Self {
        LeadershipOptions {
            urls: urls.into(),
            bucket: "tasklog_leaders".into(),
            stream: stream.into(),
            holder: holder.into(),
            address: address.into(),
            lease: Duration::from_secs(10),
            replicas: 3,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The KV bucket (created with file storage when missing).
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// The lease: a holder that has not renewed for this long has lost it (at least
    /// [`LEASE_MIN`]).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Replicas of the bucket when it is created (3 for a cluster of 3).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    fn key(&self) -> String {
        format!("leader.{}", self.stream)
    }

    fn place(&self) -> String {
        format!(
            "nats bucket {} key {} at {}",
            self.bucket,
            self.key(),
            self.urls
        )
    }
}

/// Who holds a lease, as read from the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The holder's id.
    pub holder: String,
    /// Where clients are redirected.
    pub address: String,
    /// The lease the holder renews within.
    pub lease: Duration,
    /// When the holder acquired it (its wall clock, milliseconds since the Unix epoch; for
    /// people, never for deciding expiry).
    pub acquired_at_ms: u64,
}

impl Holder {
    fn encode(&self) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "holder": self.holder,
                "address": self.address,
                "lease_ms": u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
                "acquired_at_ms": self.acquired_at_ms,
            })
            .to_string(),
        )
    }

    fn decode(bytes: &[u8], at: &str) -> Result<Holder> {
        let bad = |reason: String| Error::InvalidInput {
            at: Some(at.to_owned()),
            reason,
        };
        if bytes.len() > LEASE_VALUE_BYTES_MAX {
            return Err(bad(format!(
                "lease value of {} bytes, over {LEASE_VALUE_BYTES_MAX}",
                bytes.len()
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("lease value is not JSON: {e}")))?;
        let text = |field: &str| {
            v.get(field)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("lease value: `{field}` missing or not a string")))
        };
        let num = |field: &str| {
            v.get(field)
                .and_then(|x| x.as_u64())
                .ok_or_else(|| bad(format!("lease value: `{field}` missing or not a number")))
        };
        Ok(Holder {
            holder: text("holder")?,
            address: text("address")?,
            lease: Duration::from_millis(num("lease_ms")?),
            acquired_at_ms: num("acquired_at_ms")?,
        })
    }
}

struct Renewal {
    /// When the last successful write was sent: the lease runs from here.
    sent: Instant,
    revision: u64,
    paused: bool,
    /// Test hook: while paused, the lease clock stands still (see `stop_clock`).
    clock_stopped: bool,
    released: bool,
}

/// Leadership of one store, held until it is lost or released.
///
/// While held, a task renews it every lease/3. [`Leadership::is_leader`] turns false (and
/// [`Leadership::watch`] sends `false`) as soon as a renewal is refused (another process
/// took over) or the lease has run out without a successful renewal; it never turns true
/// again. A holder must stop writing then; if it does not, its appends are still fenced.
pub struct Leadership {
    bridge: Bridge,
    opts: LeadershipOptions,
    store: kv::Store,
    state: Arc<Mutex<Renewal>>,
    leader: watch::Receiver<bool>,
    waited: Duration,
}

impl Leadership {
    /// Acquires the lease, waiting up to `wait` for the current holder's lease to run out
    /// (judged as the module docs say). Errors: the bucket cannot be reached, or another
    /// process still holds the lease after `wait` (`Io` with `TimedOut`, naming the holder).
    pub fn acquire(opts: LeadershipOptions, wait: Duration) -> Result<Leadership> {
        Leadership::acquire_watching(opts, wait, &watch::channel(None).0)
    }

    /// [`Leadership::acquire`], sending who holds the lease each time it is read while
    /// waiting (`None` while nobody does), so that a waiting server can redirect its clients
    /// to the holder. Once acquired, `seen` gets this process's own value.
    pub fn acquire_watching(
        opts: LeadershipOptions,
        wait: Duration,
        seen: &watch::Sender<Option<Holder>>,
    ) -> Result<Leadership> {
        if opts.lease < LEASE_MIN {
            return Err(Error::InvalidInput {
                at: Some("LeadershipOptions::lease".into()),
                reason: format!("{:?} is shorter than {LEASE_MIN:?}", opts.lease),
            });
        }
        if opts.holder.is_empty() || opts.holder.len() > 256 || opts.address.len() > 1024 {
            return Err(Error::InvalidInput {
                at: Some("LeadershipOptions::holder/address".into()),
                reason: "holder must be 1 to 256 bytes, address at most 1024".into(),
            });
        }
        let bridge = Bridge::start()?;
        let started = Instant::now();
        let o = opts.clone();
        let seen_by_take = seen.clone();
        let (store, revision, sent, value) = bridge.call(async move {
            let store = open_bucket(&o).await?;
            let (revision, sent, value) = take(&store, &o, wait, &seen_by_take).await?;
            Ok((store, revision, sent, value))
        })?;
        seen.send_replace(Some(value.clone()));
        let waited = started.elapsed();
        tracing::info!(holder = %opts.holder, key = %opts.key(), revision, ?waited, "leadership acquired");
        let state = Arc::new(Mutex::new(Renewal {
            sent,
            revision,
            paused: false,
            clock_stopped: false,
            released: false,
        }));
        let (tx, rx) = watch::channel(true);
        bridge.spawn(renew(store.clone(), opts.clone(), value, state.clone(), tx))?;
        Ok(Leadership {
            bridge,
            opts,
            store,
            state,
            leader: rx,
            waited,
        })
    }

    /// Whether this process still holds the lease: false once a renewal was refused or the
    /// lease ran out by this process's own clock since the last successful renewal was sent.
    pub fn is_leader(&self) -> bool {
        let st = self.state.lock();
        *self.leader.borrow() && !st.released && st.sent.elapsed() < self.opts.lease
    }

    /// A channel that turns `false` when leadership is lost (for a server to stop writing).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// How long [`Leadership::acquire`] waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Who holds the lease of `opts`'s store now, if anyone.
    pub fn holder(&self) -> Result<Option<Holder>> {
        let store = self.store.clone();
        let opts = self.opts.clone();
        self.bridge
            .call(async move { read(&store, &opts).await.map(|e| e.map(|(h, _)| h)) })
    }

    /// Test hook: stops (or resumes) renewals, as if this process were paused.
    #[doc(hidden)]
    pub fn pause_renewals(&self, paused: bool) {
        self.state.lock().paused = paused;
    }

    /// Test hook: stops renewals AND this holder's lease clock (while on, it believes its
    /// lease fresh), breaking the assumption that clocks run at the same rate; then only the
    /// compare-and-set on the revision can depose it when it resumes.
    #[doc(hidden)]
    pub fn stop_clock(&self, stopped: bool) {
        let mut st = self.state.lock();
        st.paused = stopped;
        st.clock_stopped = stopped;
    }

    /// Gives the lease up at once (a delete with compare-and-set on the revision last
    /// written), so a contender takes over without waiting for the lease to run out.
    pub fn release(self) -> Result<()> {
        let revision = {
            let mut st = self.state.lock();
            st.released = true;
            st.revision
        };
        let store = self.store.clone();
        let place = self.opts.place();
        let key = self.opts.key();
        let got = self.bridge.call(async move {
            store
                .delete_expect_revision(key, Some(revision))
                .await
                .map_err(|e| io_err("release the lease in", &place, e))
        });
        self.bridge.shutdown();
        got
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Dropped without `release`: renewals stop and the lease runs out on its own.
        self.state.lock().released = true;
        self.bridge.shutdown();
    }
}

fn io_err(op: &'static str, place: &str, e: impl std::fmt::Display) -> Error {
    let text = e.to_string();
    let kind = if text.contains("timed out") {
        std::io::ErrorKind::TimedOut
    } else {
        std::io::ErrorKind::Other
    };
    Error::io(op, place, std::io::Error::new(kind, text))
}

async fn open_bucket(o: &LeadershipOptions) -> Result<kv::Store> {
    let place = o.place();
    let urls = crate::options::server_urls(&o.urls);
    let client = async_nats::ConnectOptions::new()
        .name(format!("tasklog lease {}", o.holder))
        .connection_timeout(Duration::from_secs(10))
        .connect(urls)
        .await
        .map_err(|e| io_err("connect to", &place, e))?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(o.request_timeout)
        .build(client);
    match js.get_key_value(&o.bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: o.bucket.clone(),
                history: 1,
                storage: StorageType::File,
                num_replicas: o.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| io_err("create the lease bucket", &place, e)),
    }
}

/// The current value and revision, or `None` when nobody holds the lease (no key, or
/// deleted by a release).
async fn read(store: &kv::Store, o: &LeadershipOptions) -> Result<Option<(Holder, u64)>> {
    let place = o.place();
    let entry = store
        .entry(o.key())
        .await
        .map_err(|e| io_err("read the lease in", &place, e))?;
    match entry {
        Some(e) if e.operation == Operation::Put => {
            Ok(Some((Holder::decode(&e.value, &place)?, e.revision)))
        }
        _ => Ok(None),
    }
}

fn me(o: &LeadershipOptions) -> Holder {
    Holder {
        holder: o.holder.clone(),
        address: o.address.clone(),
        lease: o.lease,
        acquired_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    }
}

/// The acquire loop: returns the revision written, when the write was sent and the value.
async fn take(
    store: &kv::Store,
    o: &LeadershipOptions,
    wait: Duration,
    seen_holder: &watch::Sender<Option<Holder>>,
) -> Result<(u64, Instant, Holder)> {
    let place = o.place();
    let deadline = Instant::now() + wait;
    let poll = (o.lease / 10).max(Duration::from_millis(20));
    // The revision seen and when this process first saw it.
    let mut seen: Option<(u64, Instant)> = None;
    loop {
        let now = Instant::now();
        let sent = Instant::now();
        match read(store, o).await {
            Ok(None) => {
                seen_holder.send_replace(None);
                // NOTE: `create` on a deleted key is itself a CAS on the delete's revision,
                // so two contenders racing here cannot both win.
                let value = me(o);
                match store.create(o.key(), value.encode()).await {
                    Ok(rev) => return Ok((rev, sent, value)),
                    // Lost a race (another contender created it): watch the new holder.
                    // Anything else keeps failing past `wait`: say so, with the cause.
                    Err(e) if Instant::now() >= deadline => {
                        return Err(io_err("acquire the lease in", &place, e));
                    }
                    Err(e) => tracing::debug!(error = %e, "creating the lease failed"),
                }
            }
            Ok(Some((holder, rev))) => {
                seen_holder.send_if_modified(|h| {
                    let changed = h.as_ref() != Some(&holder);
                    if changed {
                        *h = Some(holder.clone());
                    }
                    changed
                });
                let since = match seen {
                    Some((r, t)) if r == rev => t,
                    _ => {
                        seen = Some((rev, now));
                        now
                    }
                };
                // The holder's own lease, but never less than ours: a holder with a shorter
                // lease cannot make us take over sooner than we promise to wait.
                if now.duration_since(since) >= holder.lease.max(o.lease) {
                    let sent = Instant::now();
                    let value = me(o);
                    match store.update(o.key(), value.encode(), rev).await {
                        Ok(new) => {
                            tracing::info!(previous = %holder.holder, "lease taken over");
                            return Ok((new, sent, value));
                        }
                        Err(e) => tracing::debug!(error = %e, "takeover lost a race"),
                    }
                }
                if Instant::now() >= deadline {
                    return Err(Error::io(
                        "acquire the lease in",
                        &place,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "held by {:?} (redirect to {:?}) after waiting {wait:?}",
                                holder.holder, holder.address
                            ),
                        ),
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the lease failed; retrying");
                if Instant::now() >= deadline {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// Renews every lease/3 with a CAS on the revision last written; sends `false` (once) when
/// the CAS is refused or the lease ran out without a successful renewal.
async fn renew(
    store: kv::Store,
    o: LeadershipOptions,
    me: Holder,
    state: Arc<Mutex<Renewal>>,
    tx: watch::Sender<bool>,
) {
    let every = o.lease / 3;
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        // After a failure, retry soon: a request lost with a dead server must not use up the
        // lease waiting for a whole renewal period.
        wait = (o.lease / 10).max(Duration::from_millis(20));
        let (revision, last_sent, paused, released) = {
            let mut st = state.lock();
            if st.clock_stopped {
                st.sent = Instant::now();
            }
            (st.revision, st.sent, st.paused, st.released)
        };
        if released {
            let _ = tx.send(false);
            return;
        }
        if last_sent.elapsed() >= o.lease {
            tracing::warn!(holder = %o.holder, "leadership lost: the lease ran out before a renewal succeeded");
            let _ = tx.send(false);
            return;
        }
        if paused {
            continue;
        }
        let sent = Instant::now();
        // A renewal slower than what is left of the lease is too late to count, and one
        // attempt waits at most a renewal period, so a lost request is retried in time.
        let left = o.lease.saturating_sub(last_sent.elapsed()).min(every);
        let value = me.encode();
        match tokio::time::timeout(left, store.update(o.key(), value, revision)).await {
            Ok(Ok(new)) => {
                let mut st = state.lock();
                st.revision = new;
                st.sent = sent;
                wait = every;
            }
            Ok(Err(e))
                if e.kind() == UpdateErrorKind::WrongLastRevision
                    && matches!(read(&store, &o).await, Ok(Some((ref h, _))) if *h == me) =>
            {
                // An earlier attempt that timed out was applied after all: the value is still
                // ours (only this process writes it, and a takeover would have replaced it).
                // Adopt its revision; the lease still runs from the last attempt KNOWN to
                // have succeeded, so this costs time, never safety.
                if let Ok(Some((_, rev))) = read(&store, &o).await {
                    state.lock().revision = rev;
                }
            }
            Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(holder = %o.holder, "leadership lost: another process took the lease");
                let _ = tx.send(false);
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            Err(_) => tracing::warn!("lease renewal timed out; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_value_round_trips_and_bad_ones_are_refused_naming_the_key() {
        let h = Holder {
            holder: "a".into(),
            address: "http://a:8080".into(),
            lease: Duration::from_millis(1500),
            acquired_at_ms: 7,
        };
        assert_eq!(Holder::decode(&h.encode(), "k").expect("decodes"), h);
        let too_big = vec![b' '; LEASE_VALUE_BYTES_MAX + 1];
        for (bytes, says) in [
            (&too_big[..], "over 4096"),
            (&b"{not json"[..], "not JSON"),
            (
                &br#"{"holder":"a","address":"x","lease_ms":"1","acquired_at_ms":1}"#[..],
                "lease_ms",
            ),
            (
                &br#"{"address":"x","lease_ms":1,"acquired_at_ms":1}"#[..],
                "holder",
            ),
        ] {
            let err = Holder::decode(bytes, "bucket B key leader.S").expect_err("refused");
            let text = err.to_string();
            assert!(text.contains("leader.S") && text.contains(says), "{text}");
        }
    }
}
