//! Reading the stream back: the batch at a sequence, the sequence holding an LSN, replay
//! through an ordered consumer, and truncation by purge.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use bytes::Bytes;
use futures_util::StreamExt;
use tasklog::wal::{Lsn, TruncateReport};
use tasklog::{Error, Result};
use tokio::sync::mpsc;

use crate::bridge::Bridge;
use crate::envelope;
use crate::log::{Conn, nats_error};

/// How many messages the replay reader holds ahead of the caller.
const REPLAY_AHEAD_MAX: usize = 256;
/// Replays of fewer messages than this read them one by one instead of through a consumer.
const FOLLOW_DIRECT_MAX: u64 = 64;
/// How long replay waits for the next message before it gives up.
const REPLAY_MESSAGE_WAIT: Duration = Duration::from_secs(30);

/// The first and last LSN of the batch at `seq` (read from the stream's leader).
pub(crate) async fn batch_at(conn: &Conn, seq: u64) -> Result<(Lsn, Lsn)> {
    let m = conn.stream.get_raw_message(seq).await.map_err(|e| {
        nats_error(
            "read a message of",
            &conn.opts,
            format!("sequence {seq}: {e}"),
        )
    })?;
    let batch = envelope::decode(&m.payload, &|| conn.at_seq(seq))?;
    Ok((batch.first_lsn, batch.last_lsn()))
}

/// The stream's first and last sequence, and how many messages it holds.
async fn range(conn: &Conn) -> Result<(u64, u64, u64)> {
    let mut stream = conn.stream.clone();
    let info = stream
        .info()
        .await
        .map_err(|e| nats_error("read the state of", &conn.opts, e))?;
    Ok((
        info.state.first_sequence,
        info.state.last_sequence,
        info.state.messages,
    ))
}

/// The lowest sequence in `first..=last` whose batch ends at or after `lsn` (`None` when all
/// end before it). Batches are in LSN order and sequences contiguous (tasklog never deletes
/// inside the stream: `deny_delete`), so a binary search of direct reads finds it.
async fn seq_holding(conn: &Conn, lsn: Lsn, first: u64, last: u64) -> Result<Option<u64>> {
    if batch_at(conn, last).await?.1 < lsn {
        return Ok(None);
    }
    let (mut lo, mut hi) = (first, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if batch_at(conn, mid).await?.1 >= lsn {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(lo))
}

type Item = Result<(u64, Bytes)>;

/// Replays every record from `from`: an ordered consumer on the runtime reads ahead into a
/// bounded channel; this thread takes chunks of it (each through [`Bridge::call`], so no
/// `block_on` here), checks every message (envelope CRC, contiguous sequences and LSNs) and
/// calls `f`.
pub(crate) fn replay(
    bridge: &Bridge,
    conn: &Arc<Conn>,
    from: Lsn,
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<u64> {
    let c = conn.clone();
    let hint = (*conn.replay_hint.lock()).filter(|(lsn, _)| *lsn == from);
    let found = bridge.call(async move {
        let (first, last, messages) = range(&c).await?;
        if messages == 0 {
            return Ok(None);
        }
        // Following: the last replay ended just before `from`, at a sequence still held.
        if let Some((_, seq)) = hint
            && (first..=last.saturating_add(1)).contains(&seq)
        {
            return Ok((seq <= last).then_some((seq, last)));
        }
        Ok(seq_holding(&c, from, first, last)
            .await?
            .map(|start| (start, last)))
    })?;
    let Some((start, last)) = found else {
        return Ok(0);
    };
    let (tx, rx) = mpsc::channel::<Item>(REPLAY_AHEAD_MAX);
    if last - start < FOLLOW_DIRECT_MAX {
        // A follower's usual step, a few messages: read them directly rather than creating
        // a consumer each time (a replica follows ten times a second).
        bridge.spawn(read_directly(conn.clone(), start, last, tx))?;
    } else {
        bridge.spawn(read_ahead(conn.clone(), start, last, tx))?;
    }
    let mut rx = Some(rx);
    let mut next_seq = start;
    // From a hint, the first batch must start exactly at `from` (checked below).
    let mut next_lsn: Option<Lsn> = hint.map(|(lsn, _)| lsn);
    let mut count = 0u64;
    while let Some(mut r) = rx.take() {
        let (r, chunk) = bridge.call(async move {
            let mut chunk = Vec::with_capacity(REPLAY_AHEAD_MAX);
            r.recv_many(&mut chunk, REPLAY_AHEAD_MAX).await;
            Ok((r, chunk))
        })?;
        if chunk.is_empty() {
            break;
        }
        rx = Some(r);
        for item in chunk {
            let (seq, payload) = item?;
            match place_of(seq, next_seq) {
                Place::Next => {}
                Place::Again => continue,
                Place::Gap => {
                    return Err(Error::corrupt(
                        conn.at_seq(next_seq),
                        None,
                        next_lsn,
                        format!("the stream skips from sequence {} to {seq}", next_seq - 1),
                    ));
                }
            }
            let batch = envelope::decode(&payload, &|| conn.at_seq(seq))?;
            if let Some(want) = next_lsn
                && batch.first_lsn != want
            {
                return Err(Error::corrupt(
                    conn.at_seq(seq),
                    None,
                    Some(want),
                    format!("the batch starts at LSN {}, not at {want}", batch.first_lsn),
                ));
            }
            for (lsn, record) in (batch.first_lsn..).zip(batch.records.iter()) {
                if lsn >= from {
                    f(lsn, record)?;
                    count += 1;
                }
            }
            next_lsn = Some(batch.last_lsn() + 1);
            next_seq = seq + 1;
        }
    }
    if next_seq != last + 1 {
        return Err(Error::corrupt(
            conn.at_seq(next_seq),
            None,
            next_lsn,
            format!("replay ended before the stream's last sequence {last}"),
        ));
    }
    if let Some(lsn) = next_lsn {
        *conn.replay_hint.lock() = Some((lsn, next_seq));
    }
    Ok(count)
}

/// Where a delivered message falls against the sequence expected next.
#[derive(Debug, PartialEq)]
enum Place {
    /// The one expected.
    Next,
    /// One before it, delivered again: passed over. async-nats 0.45's ordered consumer,
    /// when it recreates itself (missed heartbeats under load, a stream leader change)
    /// before it has delivered anything, starts over with `DeliverPolicy::All`: from the
    /// stream's first message, below the replay's start (`recreate_consumer_stream`). Seen
    /// in the failover test as "the stream skips from sequence 4387 to 1361".
    Again,
    /// Past it: messages are missing.
    Gap,
}

fn place_of(seq: u64, expected: u64) -> Place {
    match seq.cmp(&expected) {
        std::cmp::Ordering::Equal => Place::Next,
        std::cmp::Ordering::Less => Place::Again,
        std::cmp::Ordering::Greater => Place::Gap,
    }
}

/// Reads `start..=last` by direct reads from the stream's leader, in order, into `tx`.
async fn read_directly(conn: Arc<Conn>, start: u64, last: u64, tx: mpsc::Sender<Item>) {
    for seq in start..=last {
        let item = match conn.stream.get_raw_message(seq).await {
            Ok(m) => Ok((seq, m.payload)),
            Err(e) => Err(nats_error(
                "replay",
                &conn.opts,
                format!("sequence {seq}: {e}"),
            )),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// Reads `start..=last` in order into `tx`; stops early when the reader goes away.
async fn read_ahead(conn: Arc<Conn>, start: u64, last: u64, tx: mpsc::Sender<Item>) {
    let fail = |e: String| Err(nats_error("replay", &conn.opts, e));
    let consumer = conn
        .stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await;
    let mut messages = match consumer {
        Ok(c) => match c.messages().await {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(fail(e.to_string())).await;
                return;
            }
        },
        Err(e) => {
            let _ = tx.send(fail(e.to_string())).await;
            return;
        }
    };
    loop {
        let item = match tokio::time::timeout(REPLAY_MESSAGE_WAIT, messages.next()).await {
            Err(_) => fail(format!("no message within {REPLAY_MESSAGE_WAIT:?}")),
            Ok(None) => fail("the consumer ended early".into()),
            Ok(Some(Err(e))) => fail(e.to_string()),
            Ok(Some(Ok(m))) => match m.info() {
                Ok(info) => Ok((info.stream_sequence, m.payload.clone())),
                Err(e) => fail(e.to_string()),
            },
        };
        let done = match &item {
            Ok((seq, _)) => *seq >= last,
            Err(_) => true,
        };
        if tx.send(item).await.is_err() || done {
            return;
        }
    }
}

/// Purges every message whose batch ends below `lsn`, but never the last message (it tells
/// the next open the next LSN). Returns the report and the new first LSN.
pub(crate) async fn truncate(conn: Arc<Conn>, lsn: Lsn) -> Result<(TruncateReport, Option<Lsn>)> {
    let (first, last, messages) = range(&conn).await?;
    if messages == 0 {
        return Ok((TruncateReport::default(), None));
    }
    let keep_from = seq_holding(&conn, lsn, first, last).await?.unwrap_or(last);
    let first_lsn = batch_at(&conn, keep_from).await?.0;
    if keep_from <= first {
        return Ok((TruncateReport::default(), Some(first_lsn)));
    }
    let mut stream = conn.stream.clone();
    let bytes_before = stream
        .info()
        .await
        .map_err(|e| nats_error("read the state of", &conn.opts, e))?
        .state
        .bytes;
    let purged = conn.stream.purge().sequence(keep_from).await.map_err(|e| {
        nats_error(
            "purge",
            &conn.opts,
            format!("below sequence {keep_from}: {e}"),
        )
    })?;
    let bytes_after = stream
        .info()
        .await
        .map_err(|e| nats_error("read the state of", &conn.opts, e))?
        .state
        .bytes;
    tracing::info!(
        purged = purged.purged,
        keep_from,
        lsn,
        "JetStream log truncated"
    );
    Ok((
        TruncateReport {
            // NOTE: "segments" are messages (batches) here.
            segments_removed: usize::try_from(purged.purged).unwrap_or(usize::MAX),
            bytes_removed: bytes_before.saturating_sub(bytes_after),
        },
        Some(first_lsn),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_delivered_again_is_passed_over_and_a_gap_is_refused() {
        assert_eq!(place_of(4388, 4388), Place::Next);
        assert_eq!(place_of(1361, 4388), Place::Again);
        assert_eq!(place_of(4387, 4388), Place::Again);
        assert_eq!(place_of(4389, 4388), Place::Gap);
    }
}
