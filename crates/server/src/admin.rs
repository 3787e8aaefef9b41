//! Maintenance routes under `/v1`: statistics, export (streamed), import, retention, snapshot,
//! compaction, verification and recovery of expired leases.
//!
//! Every response has the shape the CLI prints with `--json` for the same command (the CLI
//! becomes a client of these routes); where the CLI prints only text (`snapshot`, `compact`,
//! `cleanup`, `import`, `recover`) the shape is the library's own report, documented here.
//!
//! The query and body helpers at the end ([`QueryParams`], [`json_body`], [`read_body`]) turn
//! every malformed request into a 400 problem naming the parameter or JSON path; seeds.rs uses
//! them too.

#![allow(
    clippy::result_large_err,
    reason = "Problem (error.rs) is the crate-wide error body; boxing it is the owner's call"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tasklog::export::{self, ExportOptions, ImportMode, ImportOptions, OnConflict};
use tasklog::store::Stats;
use tasklog::store::recovery::{snapshot_dir, wal_dir};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::state::AppState;

mod verify;

pub use verify::VerifyReport;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(export_route))
        .routes(routes!(import_route))
        .routes(routes!(cleanup))
        .routes(routes!(snapshot))
        .routes(routes!(compact))
        .routes(routes!(verify_route))
        .routes(routes!(recover))
}

// ----- stats ---------------------------------------------------------------------------------

/// What `tasklog stats --json` prints: the store's [`Stats`] with a `runtime` object beside.
/// (CLI: `crates/cli/src/commands/read.rs`, `stats`.)
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsReport {
    /// The counts and the store's health.
    #[serde(flatten)]
    pub stats: Stats,
    /// The worker runtime's figures computed from the tasks that carry a `runtime.kind`.
    pub runtime: RuntimeFigures,
}

/// The worker runtime's figures, derived from the tasks (`tasklog::runtime::health_from_store`).
/// The same fields as the library's `RuntimeHealth` (which is read through its JSON, since the
/// library does not export the type's module).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RuntimeFigures {
    /// Pending tasks by kind, then by priority (as text).
    pub queue_depth: BTreeMap<String, BTreeMap<String, usize>>,
    /// Running tasks.
    pub running: usize,
    /// Tasks recovered after their worker died, by strategy.
    pub recovered: BTreeMap<String, u64>,
    /// Running tasks whose lease expired.
    pub stuck: u64,
    /// Retries (attempts beyond the first).
    pub retries: u64,
    /// Completed runs.
    pub succeeded: u64,
    /// Failed runs.
    pub failed: u64,
    /// Cancelled runs.
    pub cancelled: u64,
    /// succeeded / (succeeded + failed), 1 with no runs.
    pub success_rate: f64,
    /// Run time percentiles in milliseconds.
    pub run_ms_p50: f64,
    /// 90th percentile.
    pub run_ms_p90: f64,
    /// 99th percentile.
    pub run_ms_p99: f64,
}

/// `GET /v1/stats` query parameters (documentation; read through [`QueryParams`]).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Also count the tasks by this metadata key.
    #[param(min_length = 1)]
    pub by: Option<String>,
}

/// Statistics: counts by state, role, provider (and a metadata key with `by`), the store's
/// health, and the runtime's figures. Exactly what `tasklog stats --json` prints.
#[utoipa::path(
    get,
    path = "/v1/stats",
    operation_id = "v1_stats",
    tag = "maintenance",
    params(StatsParams),
    responses(
        (status = 200, description = "The statistics", body = StatsReport),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn stats(
    State(state): State<AppState>,
    q: QueryParams,
) -> ApiResult<axum::Json<StatsReport>> {
    q.allow(&["by"])?;
    let by = q.string("by")?;
    if by.as_deref().is_some_and(str::is_empty) {
        return Err(Problem::bad_request("bad_request", "`by` must name a metadata key").at("by"));
    }
    let (stats, runtime) = state
        .run(move |store| {
            let stats = store.stats(by.as_deref())?;
            let runtime = tasklog::runtime::health_from_store(store)?;
            Ok((stats, serde_json::to_value(&runtime)))
        })
        .await?;
    let runtime = runtime
        .and_then(serde_json::from_value::<RuntimeFigures>)
        .map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the runtime figures do not have their documented shape: {e}"),
            )
        })?;
    let report = StatsReport { stats, runtime };
    Ok(axum::Json(report))
}

// ----- export --------------------------------------------------------------------------------

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// tasklog's JSON export (the document `tasklog export` writes), importable.
    Json,
    /// One CSV row per task (RFC 4180, a header row).
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(ExportFormat::Json),
            "csv" => Ok(ExportFormat::Csv),
            _ => Err(format!("unknown format {s:?} (expected json or csv)")),
        }
    }
}

/// A `Write` that hands what it gets to an HTTP body through a bounded channel; fails with
/// `BrokenPipe` once the client went away, which ends the export.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Streams the export: tasks are read and written one at a time on the blocking pool, so the
/// server holds at most a few chunks of the document. A failure after the first bytes ends the
/// body early (the client sees a truncated transfer, never a complete-looking document).
#[utoipa::path(
    get,
    path = "/v1/export",
    operation_id = "v1_export",
    tag = "maintenance",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "json (default) or csv"),
        ("history" = Option<bool>, Query, description = "Include each task's history in a JSON export (default true)"),
    ),
    responses(
        (status = 200, description = "The export document, streamed", content(
            (serde_json::Value = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Bad query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn export_route(State(state): State<AppState>, q: QueryParams) -> ApiResult<Response> {
    q.allow(&["format", "history"])?;
    let format = q
        .parse::<ExportFormat>("format")?
        .unwrap_or(ExportFormat::Json);
    let history = q.bool("history")?.unwrap_or(true);
    if state.is_shutting_down() {
        return Err(Problem::unavailable(
            "shutting_down",
            "the server is shutting down",
            5,
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let store = state.store().clone();
    let options = ExportOptions::new().include_history(history);
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let w = std::io::BufWriter::with_capacity(64 << 10, ChannelWriter { tx });
        let result = match format {
            ExportFormat::Json => export::export_json(&store, &options, w, |_, _| {}),
            ExportFormat::Csv => export::export_tasks_csv(&store, &options, w, |_, _| {}),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "export failed mid-stream");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let (content_type, ext) = match format {
        ExportFormat::Json => ("application/json", "json"),
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let name = Path::new(&export::default_file_name()).with_extension(ext);
    let disposition = format!("attachment; filename=\"{}\"", name.display());
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

// ----- import --------------------------------------------------------------------------------

/// How an import combines with the store's tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportModeParam {
    /// Add the imported tasks; existing ids follow `on_conflict`.
    Merge,
    /// The store's tasks become exactly the imported set (others are removed, history kept).
    Replace,
}

impl FromStr for ImportModeParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "merge" => Ok(ImportModeParam::Merge),
            "replace" => Ok(ImportModeParam::Replace),
            _ => Err(format!("unknown mode {s:?} (expected merge or replace)")),
        }
    }
}

impl From<ImportModeParam> for ImportMode {
    fn from(m: ImportModeParam) -> Self {
        match m {
            ImportModeParam::Merge => ImportMode::Merge,
            ImportModeParam::Replace => ImportMode::Replace,
        }
    }
}

/// What a merging import does with an existing id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflictParam {
    /// Keep the existing task (listed in `skipped_ids`).
    Skip,
    /// Overwrite it (its history gains an `imported` event).
    Overwrite,
    /// Reject the whole import.
    Fail,
}

impl FromStr for OnConflictParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(OnConflictParam::Skip),
            "overwrite" => Ok(OnConflictParam::Overwrite),
            "fail" => Ok(OnConflictParam::Fail),
            _ => Err(format!(
                "unknown on_conflict {s:?} (expected skip, overwrite or fail)"
            )),
        }
    }
}

impl From<OnConflictParam> for OnConflict {
    fn from(c: OnConflictParam) -> Self {
        match c {
            OnConflictParam::Skip => OnConflict::Skip,
            OnConflictParam::Overwrite => OnConflict::Overwrite,
            OnConflictParam::Fail => OnConflict::Fail,
        }
    }
}

/// What an import did (or, with `dry_run`, would do): `tasklog::export::ImportReport`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReportDoc {
    /// New tasks created.
    pub imported: u64,
    /// Existing ids left alone.
    pub skipped: u64,
    /// Existing tasks overwritten.
    pub overwritten: u64,
    /// Tasks removed by a replacing import.
    pub removed: u64,
    /// History events re-recorded with their original times.
    pub events_replayed: u64,
    /// New tasks whose exported fields differ from what their history rebuilds.
    pub fields_restored: u64,
    /// The skipped ids.
    pub skipped_ids: Vec<String>,
    /// The document's extra top-level keys (`exported_at`, `cluster_name`, ...).
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// The layout the document was read as: `tasklog`, `wrapped`, `map` or `array`.
    pub format: Option<String>,
    /// True when nothing was written.
    pub dry_run: bool,
    /// The store's last LSN after the import.
    pub last_lsn: u64,
}

/// Imports the document in the body (tasklog's export, or the JSON layouts of the schedulers
/// tasklog replaces). The whole document is validated first: any problem answers 400
/// `invalid_document` listing every problem with its JSON path, and nothing is applied; else it
/// is applied as one atomic batch. With `dry_run=true` nothing is written either way.
#[utoipa::path(
    post,
    path = "/v1/import",
    operation_id = "v1_import",
    tag = "maintenance",
    params(
        ("mode" = inline(Option<ImportModeParam>), Query, description = "merge (default) or replace"),
        ("on_conflict" = inline(Option<OnConflictParam>), Query, description = "skip (default), overwrite or fail"),
        ("dry_run" = Option<bool>, Query, description = "Validate and count, write nothing (default false)"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json", description = "The import document"),
    responses(
        (status = 200, description = "What the import did", body = ImportReportDoc),
        (status = 400, description = "Bad query parameter or invalid document (`problems` lists every problem)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent change conflicted with the import", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Document too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn import_route(
    State(state): State<AppState>,
    q: QueryParams,
    body: Body,
) -> ApiResult<axum::Json<ImportReportDoc>> {
    // NOTE: the body first, so that a refused query leaves the connection reusable.
    let bytes = read_body(&state, body).await?;
    q.allow(&["mode", "on_conflict", "dry_run"])?;
    let mode = q
        .parse::<ImportModeParam>("mode")?
        .unwrap_or(ImportModeParam::Merge);
    let on_conflict = q
        .parse::<OnConflictParam>("on_conflict")?
        .unwrap_or(OnConflictParam::Skip);
    let options = ImportOptions::new()
        .mode(mode.into())
        .on_conflict(on_conflict.into())
        .dry_run(q.bool("dry_run")?.unwrap_or(false));
    let report = state
        .run(move |store| {
            export::import_json_bytes(store, &bytes, "request body", &options, |_, _| {})
        })
        .await?;
    Ok(axum::Json(import_doc(report)))
}

/// The library's report in its documented shape.
pub(crate) fn import_doc(r: export::ImportReport) -> ImportReportDoc {
    let format = r
        .format
        .and_then(|f| serde_json::to_value(f).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    ImportReportDoc {
        imported: r.imported,
        skipped: r.skipped,
        overwritten: r.overwritten,
        removed: r.removed,
        events_replayed: r.events_replayed,
        fields_restored: r.fields_restored,
        skipped_ids: r.skipped_ids,
        metadata: r.metadata,
        format,
        dry_run: r.dry_run,
        last_lsn: r.last_lsn,
    }
}

// ----- cleanup, snapshot, compact, recover ---------------------------------------------------

/// `POST /v1/cleanup` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Remove terminal tasks (completed, failed, cancelled) that finished more than this many
    /// seconds ago.
    pub older_than_secs: u64,
}

/// What a cleanup removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupResponse {
    /// Tasks removed (their history stays readable).
    pub removed: usize,
}

/// Retention: removes terminal tasks that finished more than `older_than_secs` ago, in one
/// atomic batch. Pending and running tasks are never touched; histories stay.
#[utoipa::path(
    post,
    path = "/v1/cleanup",
    operation_id = "v1_cleanup",
    tag = "maintenance",
    request_body = CleanupRequest,
    responses(
        (status = 200, description = "How many tasks were removed", body = CleanupResponse),
        (status = 400, description = "Bad body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cleanup(
    State(state): State<AppState>,
    body: Body,
) -> ApiResult<axum::Json<CleanupResponse>> {
    let bytes = read_body(&state, body).await?;
    let req: CleanupRequest = json_body(&bytes)?;
    let age = Duration::from_secs(req.older_than_secs);
    let removed = state.run(move |store| store.cleanup(age)).await?;
    Ok(axum::Json(CleanupResponse { removed }))
}

/// What a snapshot wrote (`tasklog::store::SnapshotInfo`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotResponse {
    /// The snapshot file.
    pub path: String,
    /// The last LSN it covers.
    pub lsn: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Log segments removed because the kept snapshots cover them.
    pub segments_removed: usize,
}

impl From<tasklog::store::SnapshotInfo> for SnapshotResponse {
    fn from(i: tasklog::store::SnapshotInfo) -> Self {
        SnapshotResponse {
            path: i.path.display().to_string(),
            lsn: i.lsn,
            bytes: i.bytes,
            segments_removed: i.segments_removed,
        }
    }
}

/// Writes a snapshot now, prunes old snapshots and the log segments they cover.
#[utoipa::path(
    post,
    path = "/v1/snapshot",
    operation_id = "v1_snapshot",
    tag = "maintenance",
    responses(
        (status = 200, description = "The snapshot written", body = SnapshotResponse),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn snapshot(
    State(state): State<AppState>,
    body: Body,
) -> ApiResult<axum::Json<SnapshotResponse>> {
    drain(body).await;
    let info = state.run(|store| store.snapshot()).await?;
    Ok(axum::Json(info.into()))
}

/// One file a compaction removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovedFile {
    /// The file.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What a compaction did (what `tasklog compact` prints, as JSON).
#[derive(Debug, Serialize, ToSchema)]
pub struct CompactResponse {
    /// The snapshot written.
    pub snapshot: SnapshotResponse,
    /// Every log segment and snapshot file removed.
    pub removed: Vec<RemovedFile>,
    /// Their total size in bytes.
    pub removed_bytes: u64,
}

/// Log segments and snapshot files of the store with their sizes (as the CLI's compact lists).
fn store_files(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    for d in [wal_dir(dir), snapshot_dir(dir)] {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().to_lowercase();
            if meta.is_file() && !name.contains("lock") {
                out.insert(e.path(), meta.len());
            }
        }
    }
    out
}

/// A snapshot now, which prunes old snapshots and the log segments the oldest kept one covers;
/// lists every file removed.
#[utoipa::path(
    post,
    path = "/v1/compact",
    operation_id = "v1_compact",
    tag = "maintenance",
    responses(
        (status = 200, description = "The snapshot written and the files removed", body = CompactResponse),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn compact(
    State(state): State<AppState>,
    body: Body,
) -> ApiResult<axum::Json<CompactResponse>> {
    drain(body).await;
    let resp = state
        .run(|store| {
            let before = store_files(store.dir());
            let info = store.snapshot()?;
            let after = store_files(store.dir());
            let removed: Vec<RemovedFile> = before
                .into_iter()
                .filter(|(p, _)| !after.contains_key(p))
                .map(|(p, bytes)| RemovedFile {
                    path: p.display().to_string(),
                    bytes,
                })
                .collect();
            Ok(CompactResponse {
                snapshot: info.into(),
                removed_bytes: removed.iter().map(|f| f.bytes).sum(),
                removed,
            })
        })
        .await?;
    Ok(axum::Json(resp))
}

/// Checks the whole store as `tasklog verify --json` does, read-only, beside the running
/// store: every log frame's checksum and the LSN sequence, every snapshot, a replay of the log
/// into a fresh state, and a read-only open. Answers 200 with `ok: false` when damage is found
/// (the CLI exits 3 then).
#[utoipa::path(
    get,
    path = "/v1/verify",
    operation_id = "v1_verify",
    tag = "maintenance",
    responses(
        (status = 200, description = "The verification report", body = VerifyReport),
        (status = 503, description = "Shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn verify_route(State(state): State<AppState>) -> ApiResult<axum::Json<VerifyReport>> {
    let report = state.run(|store| verify::verify(store.dir())).await?;
    Ok(axum::Json(report))
}

/// What `POST /v1/recover` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverResponse {
    /// Running tasks whose lease had expired.
    pub recovered: Vec<String>,
    /// The store's interrupted-work policy: `MarkFailed`, `Requeue` or `Leave`.
    pub policy: String,
    /// False under `Leave`: the tasks were found but left running.
    pub applied: bool,
}

/// Applies the interrupted-work policy now to running tasks whose lease expired (failed, or
/// back to pending keeping their checkpoint).
#[utoipa::path(
    post,
    path = "/v1/recover",
    operation_id = "v1_recover",
    tag = "maintenance",
    responses(
        (status = 200, description = "The tasks recovered", body = RecoverResponse),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn recover(
    State(state): State<AppState>,
    body: Body,
) -> ApiResult<axum::Json<RecoverResponse>> {
    drain(body).await;
    let (recovered, policy) = state
        .run(|store| Ok((store.recover_expired_leases()?, store.interrupted_policy())))
        .await?;
    Ok(axum::Json(RecoverResponse {
        recovered,
        applied: policy != tasklog::store::InterruptedPolicy::Leave,
        policy: format!("{policy:?}"),
    }))
}

// ----- request helpers -----------------------------------------------------------------------

/// The query string as name/value pairs; every reading names the parameter in its 400.
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|e| {
                    Problem::bad_request("bad_request", format!("malformed query string: {e}"))
                })?;
        Ok(QueryParams { pairs })
    }
}

impl QueryParams {
    /// 400 naming the first parameter not in `known`.
    pub fn allow(&self, known: &[&str]) -> ApiResult<()> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(Problem::bad_request(
                "bad_request",
                if known.is_empty() {
                    format!("unknown query parameter {k:?} (this route takes none)")
                } else {
                    format!(
                        "unknown query parameter {k:?} (expected one of: {})",
                        known.join(", ")
                    )
                },
            )
            .at(k.clone())),
        }
    }

    /// The single value of `name` (400 when given twice).
    pub fn string(&self, name: &str) -> ApiResult<Option<String>> {
        let mut found = self.pairs.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.clone());
        if found.next().is_some() {
            return Err(Problem::bad_request(
                "bad_request",
                format!("query parameter {name:?} given more than once"),
            )
            .at(name));
        }
        Ok(first)
    }

    /// `name` parsed with `FromStr`.
    pub fn parse<T>(&self, name: &str) -> ApiResult<Option<T>>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| {
                Problem::bad_request(
                    "bad_request",
                    format!("query parameter {name:?}: {e} (got {v:?})"),
                )
                .at(name)
            }),
        }
    }

    /// `name` as a boolean: `true` or `false`.
    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.string(name)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(Problem::bad_request(
                "bad_request",
                format!("query parameter {name:?} must be true or false (got {v:?})"),
            )
            .at(name)),
        }
    }
}

/// A route's single path parameter (a task id), with a malformed one (not UTF-8 once
/// percent-decoded) answered 400 problem+json rather than axum's text.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|e| {
                Problem::bad_request(
                    "bad_request",
                    format!("bad path parameter: {}", e.body_text()),
                )
            })
    }
}

/// Reads and drops the body of a route that takes none (at most 64 KiB), so that a client
/// that sent one (`{}`, an empty chunked body) keeps its connection: hyper closes a
/// connection whose request body was left unread.
pub async fn drain(body: Body) {
    let _ = axum::body::to_bytes(body, 64 << 10).await;
}

/// Reads the whole body, at most the server's `max_body_bytes` (413 beyond).
pub async fn read_body(state: &AppState, body: Body) -> ApiResult<Bytes> {
    let max = state.options().max_body_bytes;
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let too_large =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.to_string().contains("length limit"));
        if too_large {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {max} bytes"),
            )
        } else {
            Problem::bad_request(
                "bad_request",
                format!("could not read the request body: {e}"),
            )
        }
    })
}

/// Parses a JSON body into `T`; a problem names the JSON path (`$.older_than_secs`).
/// Every body these routes take is a JSON object (serde would also read a struct from an
/// array, which is refused here).
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(Problem::bad_request(
                "invalid_input",
                "the body is empty; a JSON object is expected",
            )
            .at("$"));
        }
        Some(_) => {
            return Err(
                Problem::bad_request("invalid_input", "the body must be a JSON object").at("$"),
            );
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "$".to_string()
        } else {
            format!("$.{path}")
        };
        Problem::bad_request("invalid_input", format!("{at}: {}", e.inner())).at(at)
    })?;
    de.end().map_err(|e| {
        Problem::bad_request(
            "invalid_input",
            format!("trailing characters after the JSON value: {e}"),
        )
        .at("$")
    })?;
    Ok(value)
}

/// [`json_body`], with an empty body read as `{}` (bodies whose every field is optional).
pub fn json_body_or_empty<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        json_body(b"{}")
    } else {
        json_body(bytes)
    }
}
