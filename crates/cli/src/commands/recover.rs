//! `recover`: applies the interrupted-work policy now, explicitly. One-shot commands leave
//! interrupted work alone (see [`super::open_write`]); this is how an operator settles what a
//! crashed application left running, when the application will not come back for it.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tasklog::StoreOptions;
use tasklog::store::InterruptedPolicy;

use super::{Ctx, close, open_write_with};
use crate::output;

/// What `recover --json` prints (and what `POST /v1/recover` answers).
#[derive(Debug, Serialize, Deserialize)]
pub struct Recovered {
    /// The tasks interrupted: running under a session that ended without closing the store,
    /// or whose lease expired.
    #[serde(alias = "tasks_interrupted", alias = "tasks")]
    pub recovered: Vec<String>,
    /// `mark_failed` or `requeue`.
    #[serde(default)]
    pub policy: String,
}

/// `recover [--requeue] [--json]`.
pub fn recover(ctx: &Ctx, out: &mut dyn Write, requeue: bool, json: bool) -> anyhow::Result<()> {
    let policy = if requeue { "requeue" } else { "mark_failed" };
    let report = match &ctx.remote {
        Some(remote) => {
            remote.post::<Recovered>("/v1/recover", &Vec::new(), &json!({ "policy": policy }))?
        }
        None => {
            // Opening as the owner applies the policy to orphaned tasks and expired leases,
            // as one atomic batch.
            let p = if requeue {
                InterruptedPolicy::Requeue
            } else {
                InterruptedPolicy::MarkFailed
            };
            let options = StoreOptions::new().preallocate(false).interrupted_policy(p);
            super::require_store(&ctx.dir)?;
            let store = open_write_with(&ctx.dir, options)?;
            let recovered = store.recovery_report().tasks_interrupted.clone();
            close(store)?;
            Recovered {
                recovered,
                policy: policy.to_string(),
            }
        }
    };
    if json {
        return output::json(out, &report);
    }
    if report.recovered.is_empty() {
        writeln!(out, "nothing to recover: no interrupted task")?;
        return Ok(());
    }
    let verb = if report.policy == "requeue" {
        "requeued (pending again, checkpoint kept)"
    } else {
        "marked failed"
    };
    writeln!(
        out,
        "{} interrupted task(s) {verb}: {}",
        report.recovered.len(),
        report.recovered.join(", ")
    )?;
    Ok(())
}
