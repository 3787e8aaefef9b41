//! `pause KIND`, `resume KIND` and `kinds`: the store's per-kind admission rules, directly or
//! through a server (`/v1/kinds`).

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};

use super::{Ctx, close};
use crate::output;

/// `pause` (or `resume` with `pause = false`): prints `<kind>: paused` or `<kind>: resumed`.
pub fn pause(ctx: &Ctx, out: &mut dyn Write, kind: &str, pause: bool) -> anyhow::Result<()> {
    let verb = if pause { "pause" } else { "resume" };
    match &ctx.remote {
        Some(remote) => {
            let path = format!("/v1/kinds/{}/{verb}", crate::client::segment(kind));
            let _: Value = remote.post(&path, &Vec::new(), &json!({}))?;
        }
        None => {
            let store = ctx.open_write()?;
            let result = if pause {
                store.pause_kind(kind)
            } else {
                store.resume_kind(kind)
            };
            close(store)?;
            result?;
        }
    }
    writeln!(out, "{kind}: {verb}d")?;
    Ok(())
}

/// `kinds`: one line per kind with rules, or `{"kinds": {...}}` with `--json`.
pub fn list(ctx: &Ctx, out: &mut dyn Write, json: bool) -> anyhow::Result<()> {
    let value: Value = match &ctx.remote {
        Some(remote) => remote.get("/v1/kinds", &Vec::new())?,
        None => {
            let store = ctx.open_read()?;
            json!({ "kinds": store.kind_settings() })
        }
    };
    if json {
        return output::json(out, &value);
    }
    let kinds: BTreeMap<String, Value> = value
        .get("kinds")
        .cloned()
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default();
    if kinds.is_empty() {
        writeln!(out, "no kind has rules")?;
    }
    for (kind, rules) in kinds {
        let mut parts = Vec::new();
        if rules["paused"] == json!(true) {
            parts.push("paused".to_string());
        }
        if let Some(n) = rules.get("max_running").and_then(Value::as_u64) {
            parts.push(format!("max running {n}"));
        }
        if let Some(p) = rules.get("per_key") {
            parts.push(format!(
                "max running {} per {}",
                p["max_running"],
                p["field"].as_str().unwrap_or_default()
            ));
        }
        if let Some(r) = rules.get("rate") {
            parts.push(format!("{} starts per {} ms", r["starts"], r["per_ms"]));
        }
        writeln!(out, "{kind}: {}", parts.join(", "))?;
    }
    Ok(())
}
