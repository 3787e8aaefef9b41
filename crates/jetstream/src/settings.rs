//! Settings files of the store kept beside the log (`Log::keep_setting`,
//! `Log::fetch_setting`; docs/jetstream.md, "Settings"): the per-kind admission rules
//! (`kinds.json`) follow the writer from machine to machine.
//!
//! One object per file in the snapshot bucket, named `setting-<name>`, holding the file's
//! bytes as the store wrote them (the store checks them on reading like its own copy; the
//! object store adds a SHA-256 digest that the client checks). The newest put wins.

use std::sync::Arc;

use async_nats::jetstream::object_store::ObjectStore;
use tasklog::{Error, Result};
use tokio::io::AsyncReadExt as _;

use crate::log::{Conn, nats_error};
use crate::snapshots::bucket;

/// Longest setting name: letters, digits, `.`, `_` and `-` only.
pub const SETTING_NAME_BYTES_MAX: usize = 64;

fn object_name(name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= SETTING_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(Error::InvalidInput {
            at: Some("setting name".into()),
            reason: format!(
                "{name:?}: 1 to {SETTING_NAME_BYTES_MAX} letters, digits, '.', '_' or '-'"
            ),
        });
    }
    Ok(format!("setting-{name}"))
}

/// Stores `bytes` as the setting `name`.
pub(crate) async fn keep(conn: Arc<Conn>, name: String, bytes: Vec<u8>) -> Result<()> {
    let object = object_name(&name)?;
    let bucket = bucket(&conn, true)
        .await?
        .ok_or_else(|| nats_error("open the settings bucket of", &conn.opts, "missing"))?;
    bucket
        .put(object.as_str(), &mut bytes.as_slice())
        .await
        .map_err(|e| nats_error("store a setting in", &conn.opts, e))?;
    tracing::info!(name, bucket = %conn.opts.snapshot_bucket, "setting kept beside the log");
    Ok(())
}

/// The setting `name`, refused past `max_bytes` before it is read.
pub(crate) async fn fetch(
    conn: Arc<Conn>,
    name: String,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>> {
    let object = object_name(&name)?;
    let Some(bucket) = bucket(&conn, false).await? else {
        return Ok(None);
    };
    read(&conn, &bucket, &object, max_bytes).await
}

async fn read(
    conn: &Conn,
    bucket: &ObjectStore,
    object: &str,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>> {
    let info = match bucket.info(object).await {
        Ok(info) if !info.deleted => info,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == async_nats::jetstream::object_store::InfoErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(nats_error("read a setting from", &conn.opts, e)),
    };
    let len = info.size as u64;
    if len > max_bytes {
        return Err(Error::TooLarge {
            what: "a setting kept beside the log",
            len,
            max: max_bytes,
        });
    }
    let reader = bucket
        .get(object)
        .await
        .map_err(|e| nats_error("read a setting from", &conn.opts, e))?;
    let mut bytes = Vec::with_capacity(info.size);
    // The object's digest is checked as its end is read: a damaged object fails here.
    reader
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| nats_error("read a setting from", &conn.opts, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::TooLarge {
            what: "a setting kept beside the log",
            len: bytes.len() as u64,
            max: max_bytes,
        });
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names_are_plain_file_names() {
        assert_eq!(
            object_name("kinds.json").expect("valid"),
            "setting-kinds.json"
        );
        for bad in ["", "../x", "a/b", "a b", &"k".repeat(65)] {
            assert!(object_name(bad).is_err(), "{bad:?}");
        }
    }
}
