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

/// `complete-kinds` (hidden; the completion scripts call it for `pause`/`resume`): every kind
/// the store knows — those of its tasks (`runtime.kind`) and those with rules — one per line,
/// sorted. The store is opened read-only (no lock, nothing written, beside a running writer);
/// with no store there, nothing is printed.
pub fn complete(ctx: &Ctx, out: &mut dyn Write) -> anyhow::Result<()> {
    if !tasklog::store::wal_dir(&ctx.dir).is_dir() {
        return Ok(());
    }
    let store = ctx.open_read()?;
    let mut kinds: std::collections::BTreeSet<String> = store.kind_settings().into_keys().collect();
    if let Some(by_kind) = store.stats(Some(tasklog::runtime::META_KIND))?.by_key {
        // NOTE: "(none)" is how the statistics count the tasks without a kind.
        kinds.extend(by_kind.counts.into_keys().filter(|k| k != "(none)"));
    }
    for kind in kinds {
        writeln!(out, "{kind}")?;
    }
    Ok(())
}

/// Bash: `pause`/`resume` complete kinds, everything else goes to clap's function. The
/// global flags that take a value are skipped so the subcommand is found after them, and
/// `--dir` is passed on so the kinds come from the store being completed for.
const BASH_KINDS: &str = r#"
# Kinds for `pause`/`resume`, read from the store by `tasklog complete-kinds` (read-only).
_tasklog_with_kinds() {
    local i word cmd="" positional=0 dir=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
            --dir) dir=(--dir "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --dir=*) dir=("$word") ;;
            --remote|--wait|--token-file|--actor) ((i++)) ;;
            -*) ;;
            *) if [[ -z "$cmd" ]]; then cmd="$word"; else ((positional++)); fi ;;
        esac
    done
    if [[ ( "$cmd" == pause || "$cmd" == resume ) && $positional -eq 0 && "${COMP_WORDS[COMP_CWORD]}" != -* ]]; then
        local IFS=$'\n'
        compopt +o default +o bashdefault 2>/dev/null
        COMPREPLY=( $(compgen -W "$("${COMP_WORDS[0]}" "${dir[@]}" complete-kinds 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}") )
        return 0
    fi
    _tasklog "$@"
}
if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _tasklog_with_kinds -o nosort -o bashdefault -o default tasklog
else
    complete -F _tasklog_with_kinds -o bashdefault -o default tasklog
fi
"#;

/// Zsh: the action of the `kind` argument of `pause`/`resume` (clap leaves it empty).
const ZSH_KINDS: &str = r#"
# Kinds for `pause`/`resume`, read from the store by `tasklog complete-kinds` (read-only).
(( $+functions[_tasklog_kinds] )) ||
_tasklog_kinds() {
    local -a kinds dir
    [[ -n "${opt_args[--dir]}" ]] && dir=(--dir "${opt_args[--dir]}")
    kinds=(${(f)"$(${words[1]} $dir complete-kinds 2>/dev/null)"})
    _describe -t kinds 'kind' kinds
}
"#;

/// Fish: `pause`/`resume` (not `schedule pause`) complete kinds, never file names.
const FISH_KINDS: &str = r#"
# Kinds for `pause`/`resume`, read from the store by `tasklog complete-kinds` (read-only).
function __tasklog_kinds
    set -l args (commandline -opc)
    set -l dir
    for i in (seq (count $args))
        if test "$args[$i]" = --dir
            set dir --dir $args[(math $i + 1)]
        else if string match -q -- '--dir=*' $args[$i]
            set dir $args[$i]
        end
    end
    $args[1] $dir complete-kinds 2>/dev/null
end
complete -c tasklog -n "__fish_seen_subcommand_from pause resume; and not __fish_seen_subcommand_from schedule" -f -a "(__tasklog_kinds)"
"#;

/// The argument spec clap writes for the kind of `pause`/`resume` in a zsh script.
const ZSH_KIND_SPEC: &str = "':kind -- The kind:'";

/// Adds kind completion to a script clap generated: bash, zsh and fish ask
/// `tasklog complete-kinds`; other shells get the script unchanged (no kinds).
pub fn with_kind_completion(shell: clap_complete::Shell, script: Vec<u8>) -> Vec<u8> {
    use clap_complete::Shell;
    let Ok(text) = String::from_utf8(script.clone()) else {
        return script;
    };
    let text = match shell {
        Shell::Bash => text + BASH_KINDS,
        Shell::Zsh => {
            // NOTE: the function must exist before compdef runs the completion, so it goes
            // first; the spec is rewritten in place (tests check it still matches clap's).
            let spec = ZSH_KIND_SPEC.replace(":'", ":_tasklog_kinds'");
            let (head, body) = text.split_once('\n').unwrap_or(("", &text));
            format!("{head}\n{ZSH_KINDS}{}", body.replace(ZSH_KIND_SPEC, &spec))
        }
        Shell::Fish => text + FISH_KINDS,
        _ => text,
    };
    text.into_bytes()
}
