//! `/v1/kinds`: the store's per-kind admission rules: pause and resume a kind, set its
//! concurrency limit (per kind and per key) and its rate limit. The rules are the store's
//! (`tasklog::store::KindSettings`, durable in `kinds.json`), checked at every start, so they
//! hold for HTTP workers, the library's runtime and direct starts alike.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tasklog::store::KindSettings;
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::{Json, Path};
use crate::state::AppState;

/// The admission rules of one kind. Omitted fields are no rule.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindSettingsDoc {
    /// No task of the kind starts while paused; running ones finish.
    #[serde(default)]
    pub paused: bool,
    /// Most tasks of the kind running at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::extract::int::opt_u32"
    )]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub max_running: Option<u32>,
    /// Most tasks of the kind running at once with one value of a metadata field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key: Option<PerKeyDoc>,
    /// Most starts of the kind per window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateDoc>,
}

/// A concurrency limit per value of a metadata field.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerKeyDoc {
    /// The metadata field whose value is the key (e.g. `customer`).
    #[schema(min_length = 1, max_length = 256)]
    pub field: String,
    /// Most tasks of the kind running at once with one value.
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    #[serde(deserialize_with = "crate::extract::int::u32")]
    pub max_running: u32,
}

/// At most `starts` starts in any window of `per_ms` milliseconds.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateDoc {
    /// Starts allowed per window (1 to 100,000).
    #[schema(minimum = 1, maximum = 100_000)]
    #[serde(deserialize_with = "crate::extract::int::u32")]
    pub starts: u32,
    /// The window in milliseconds (1 to 86,400,000).
    #[schema(minimum = 1, maximum = 86_400_000)]
    #[serde(deserialize_with = "crate::extract::int::u64")]
    pub per_ms: u64,
}

/// `GET /v1/kinds`: every kind that has rules.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KindsResponse {
    /// Rules by kind.
    pub kinds: BTreeMap<String, KindSettingsDoc>,
}

impl From<&KindSettings> for KindSettingsDoc {
    fn from(s: &KindSettings) -> Self {
        KindSettingsDoc {
            paused: s.paused,
            max_running: s.max_running,
            per_key: s.per_key.as_ref().map(|p| PerKeyDoc {
                field: p.field.clone(),
                max_running: p.max_running,
            }),
            rate: s.rate.as_ref().map(|r| RateDoc {
                starts: r.starts,
                per_ms: r.per_ms,
            }),
        }
    }
}

impl KindSettingsDoc {
    fn into_settings(self) -> KindSettings {
        let mut s = KindSettings::new().paused(self.paused);
        if let Some(n) = self.max_running {
            s = s.max_running(n);
        }
        if let Some(p) = self.per_key {
            s = s.max_running_per_key(p.field, p.max_running);
        }
        if let Some(r) = self.rate {
            s = s.rate(r.starts, r.per_ms);
        }
        s
    }
}

/// The store names a bad field `kinds.<kind>.<field>`; the API names it by its JSON path.
fn at_json_path(p: Problem, kind: &str) -> Problem {
    let prefix = format!("kinds.{kind}.");
    let at = p.at.clone();
    match at {
        Some(at) if at.starts_with(&prefix) => p.at(format!("$.{}", &at[prefix.len()..])),
        Some(at) if at == "per_key.field" => p.at("$.per_key.field"),
        _ => p,
    }
}

/// Lists the admission rules of every kind that has some.
#[utoipa::path(
    get,
    path = "/v1/kinds",
    tag = "workers",
    operation_id = "list_kinds",
    responses(
        (status = 200, description = "Rules by kind (kinds without rules are absent)", body = KindsResponse),
    )
)]
pub(super) async fn list(State(state): State<AppState>) -> ApiResult<axum::Json<KindsResponse>> {
    let all = state.run(|store| Ok(store.kind_settings())).await?;
    let kinds = all.iter().map(|(k, s)| (k.clone(), s.into())).collect();
    Ok(axum::Json(KindsResponse { kinds }))
}

/// Sets the admission rules of a kind (replacing its previous rules; `{}` removes them).
/// Durable when answered; applies to the next start of any worker.
#[utoipa::path(
    put,
    path = "/v1/kinds/{kind}",
    tag = "workers",
    operation_id = "set_kind",
    params(("kind" = String, Path, description = "The kind (`runtime.kind` of its tasks), 1 to 256 bytes", min_length = 1, max_length = 256)),
    request_body = KindSettingsDoc,
    responses(
        (status = 200, description = "The kind's rules now", body = KindSettingsDoc),
        (status = 405, description = "The store is read-only", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn set(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Json(body): Json<KindSettingsDoc>,
) -> ApiResult<axum::Json<KindSettingsDoc>> {
    let settings = body.into_settings();
    let k = kind.clone();
    let doc = KindSettingsDoc::from(&settings);
    state
        .run(move |store| store.set_kind_settings(&k, settings))
        .await
        .map_err(|p| at_json_path(p, &kind))?;
    state.hub().wake_claimers();
    Ok(axum::Json(doc))
}

/// Pauses a kind: no task of it starts (claims pass over it, a direct start answers 429)
/// until it is resumed; running tasks finish. Durable when answered.
#[utoipa::path(
    post,
    path = "/v1/kinds/{kind}/pause",
    tag = "workers",
    operation_id = "pause_kind",
    params(("kind" = String, Path, description = "The kind, 1 to 256 bytes", min_length = 1, max_length = 256)),
    responses(
        (status = 200, description = "The kind's rules now", body = KindSettingsDoc),
        (status = 405, description = "The store is read-only", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn pause(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    body: Body,
) -> ApiResult<axum::Json<KindSettingsDoc>> {
    // Takes no body; one sent anyway (`{}`) is read and dropped to keep the connection.
    crate::admin::drain(body).await;
    let s = state.run(move |store| store.pause_kind(&kind)).await?;
    Ok(axum::Json((&s).into()))
}

/// Resumes a paused kind. Durable when answered.
#[utoipa::path(
    post,
    path = "/v1/kinds/{kind}/resume",
    tag = "workers",
    operation_id = "resume_kind",
    params(("kind" = String, Path, description = "The kind, 1 to 256 bytes", min_length = 1, max_length = 256)),
    responses(
        (status = 200, description = "The kind's rules now", body = KindSettingsDoc),
        (status = 405, description = "The store is read-only", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn resume(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    body: Body,
) -> ApiResult<axum::Json<KindSettingsDoc>> {
    // Takes no body; one sent anyway (`{}`) is read and dropped to keep the connection.
    crate::admin::drain(body).await;
    let s = state.run(move |store| store.resume_kind(&kind)).await?;
    state.hub().wake_claimers();
    Ok(axum::Json((&s).into()))
}
