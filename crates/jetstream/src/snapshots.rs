//! Snapshots kept beside the log, in a JetStream object store (`Log::keep_snapshot`,
//! `Log::fetch_snapshot`; docs/jetstream.md, "Snapshots"), so that a store opened on another
//! machine replays only what follows the newest one, and the stream can be cut below it.
//!
//! One object per snapshot, named `snap-<LSN, 20 digits>`: the snapshot file's bytes as the
//! store wrote them (magic, version and CRCs inside; the object store adds a SHA-256 digest
//! that the client checks on reading). The newest [`SNAPSHOTS_KEPT`] are kept.

use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use futures_util::StreamExt as _;
use tasklog::wal::Lsn;
use tasklog::{Error, Result};

use crate::log::{Conn, nats_error};

/// Snapshots kept in the bucket: the newest and the one before it (a fallback, should the
/// newest be unreadable; the store cuts the log only below what it keeps locally).
pub const SNAPSHOTS_KEPT: usize = 2;

fn object_name(lsn: Lsn) -> String {
    format!("snap-{lsn:020}")
}

fn lsn_of(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix("snap-")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The bucket (also the settings'); created (file storage, the stream's replicas) when missing
/// and `create`.
pub(crate) async fn bucket(conn: &Conn, create: bool) -> Result<Option<ObjectStore>> {
    let name = &conn.opts.snapshot_bucket;
    match conn.js.get_object_store(name).await {
        Ok(b) => Ok(Some(b)),
        Err(_) if !create => Ok(None),
        Err(_) => conn
            .js
            .create_object_store(object_store::Config {
                bucket: name.clone(),
                description: Some(format!(
                    "snapshots of the tasklog store on stream {}",
                    conn.opts.stream
                )),
                storage: StorageType::File,
                num_replicas: conn.opts.replicas,
                ..Default::default()
            })
            .await
            .map(Some)
            .map_err(|e| nats_error("create the snapshot bucket of", &conn.opts, e)),
    }
}

/// The LSNs of the snapshots in the bucket, newest first.
async fn kept(conn: &Conn, bucket: &ObjectStore) -> Result<Vec<Lsn>> {
    let mut list = bucket
        .list()
        .await
        .map_err(|e| nats_error("list the snapshots of", &conn.opts, e))?;
    let mut lsns = Vec::new();
    while let Some(info) = list.next().await {
        let info = info.map_err(|e| nats_error("list the snapshots of", &conn.opts, e))?;
        if !info.deleted
            && let Some(lsn) = lsn_of(&info.name)
        {
            lsns.push(lsn);
        }
    }
    lsns.sort_unstable_by(|a, b| b.cmp(a));
    lsns.dedup();
    Ok(lsns)
}

/// Stores the snapshot file at `path` (covering up to `lsn`), then deletes all but the newest
/// [`SNAPSHOTS_KEPT`].
pub(crate) async fn keep(conn: Arc<Conn>, lsn: Lsn, path: PathBuf) -> Result<()> {
    let bucket = bucket(&conn, true)
        .await?
        .ok_or_else(|| nats_error("open the snapshot bucket of", &conn.opts, "missing"))?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::io("open", &path, e))?;
    bucket
        .put(object_name(lsn).as_str(), &mut file)
        .await
        .map_err(|e| nats_error("store a snapshot in", &conn.opts, e))?;
    for old in kept(&conn, &bucket).await?.into_iter().skip(SNAPSHOTS_KEPT) {
        if let Err(e) = bucket.delete(object_name(old)).await {
            tracing::warn!(lsn = old, error = %e, "an old snapshot stays in the bucket");
        }
    }
    tracing::info!(lsn, bucket = %conn.opts.snapshot_bucket, "snapshot kept beside the log");
    Ok(())
}

/// Writes the newest snapshot above `newer_than` into `into` (fsynced) and returns its LSN.
pub(crate) async fn fetch(conn: Arc<Conn>, newer_than: Lsn, into: PathBuf) -> Result<Option<Lsn>> {
    let Some(bucket) = bucket(&conn, false).await? else {
        return Ok(None);
    };
    let Some(lsn) = kept(&conn, &bucket)
        .await?
        .into_iter()
        .next()
        .filter(|l| *l > newer_than)
    else {
        return Ok(None);
    };
    let mut object = bucket
        .get(object_name(lsn))
        .await
        .map_err(|e| nats_error("read a snapshot from", &conn.opts, e))?;
    let mut out = tokio::fs::File::create(&into)
        .await
        .map_err(|e| Error::io("create", &into, e))?;
    // The object's digest is checked as its end is read: a damaged object fails here.
    tokio::io::copy(&mut object, &mut out)
        .await
        .map_err(|e| Error::io("copy a snapshot from the bucket into", &into, e))?;
    out.sync_all()
        .await
        .map_err(|e| Error::io("fsync", &into, e))?;
    tracing::info!(lsn, bucket = %conn.opts.snapshot_bucket, "snapshot fetched from beside the log");
    Ok(Some(lsn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_order_and_parse_back() {
        assert_eq!(object_name(42), "snap-00000000000000000042");
        assert_eq!(lsn_of(&object_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "snap-42",
            "snap-0000000000000000004x",
            "other",
            "snap-000000000000000000420",
        ] {
            assert_eq!(lsn_of(bad), None, "{bad}");
        }
    }
}
