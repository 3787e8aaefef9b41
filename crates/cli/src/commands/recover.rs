//! `recover`: applies the interrupted-work policy now, explicitly. One-shot commands leave
//! interrupted work alone (see [`super::open_write`]); this is how an operator settles what a
//! crashed application left running, when the application will not come back for it.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tasklog::StoreOptions;
use tasklog::store::InterruptedPolicy;

use super::{Ctx, close, open_write_with};
use crate::exit::{Exit, OPERATION};
use crate::output;

/// What `recover --json` prints (and what `POST /v1/recover` answers).
#[derive(Debug, Serialize, Deserialize)]
pub struct Recovered {
    /// The tasks interrupted: running under a session that ended without closing the store,
    /// or whose lease expired.
    pub recovered: Vec<String>,
    /// `mark_failed` or `requeue`.
    #[serde(default)]
    pub policy: String,
}

/// The policy as `recover --json` names it (`mark_failed`, `requeue`, `leave`), from the
/// server's spelling (`MarkFailed`, ...).
fn policy_name(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `recover [--requeue] [--json]`.
pub fn recover(ctx: &Ctx, out: &mut dyn Write, requeue: bool, json: bool) -> anyhow::Result<()> {
    let policy = if requeue { "requeue" } else { "mark_failed" };
    let report = match &ctx.remote {
        Some(_) if requeue => {
            return Err(Exit::new(
                OPERATION,
                "a server applies its own interrupted-work policy; `recover --requeue` works on a store without a server",
            )
            .into());
        }
        Some(remote) => {
            let mut r = remote.post::<Recovered>("/v1/recover", &Vec::new(), &json!({}))?;
            r.policy = policy_name(&r.policy);
            r
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

#[cfg(test)]
mod tests {
    #[test]
    fn policy_names_are_snake_case() {
        assert_eq!(super::policy_name("MarkFailed"), "mark_failed");
        assert_eq!(super::policy_name("Requeue"), "requeue");
        assert_eq!(super::policy_name("mark_failed"), "mark_failed");
    }
}
