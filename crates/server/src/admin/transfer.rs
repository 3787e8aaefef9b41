//! `GET /v1/export` (streamed) and `POST /v1/import`.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tasklog::export::{self, ExportOptions, ImportMode, ImportOptions, OnConflict};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::request::{QueryParams, read_body};
use crate::error::{ApiResult, Problem};
use crate::state::AppState;

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_route))
        .routes(routes!(import_route))
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
        crate::tasks::listing::FilterParams,
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
    // Every listing filter selects what is exported, as `tasklog export --state ...` does.
    let mut filter = tasklog::store::Filter::default();
    for (name, value) in q.pairs() {
        if name != "format"
            && name != "history"
            && !crate::tasks::listing::filter_param(&mut filter, name, value)?
        {
            return Err(Problem::bad_request(
                "bad_request",
                format!("unknown query parameter {name:?}"),
            )
            .at(name.clone()));
        }
    }
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
    let options = ExportOptions::new().include_history(history).filter(filter);
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

/// An import document, for the OpenAPI description: an object or an array (its layouts are
/// checked by the server, every problem reported with its JSON path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ImportDocument {
    /// tasklog's export, a wrapped document with `tasks`, or a plain object of tasks by id.
    Object(BTreeMap<String, serde_json::Value>),
    /// An array of task objects.
    Array(Vec<serde_json::Value>),
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
    /// The first 100 skipped ids, in document order (`skipped` counts them all).
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
    request_body(content = ImportDocument, content_type = "application/json", description = "The import document: tasklog's export, `{\"tasks\": {...}}` with header fields, a plain object of tasks by id, or an array of tasks (see docs/export.md); validated whole by the server"),
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
            let name = "request body";
            // A large document is validated whole first (nothing is written if it is refused),
            // then streamed into the import's staging segment: its planned mutations are never
            // all held. A small one goes as one ordinary batch (a staging segment would cost it
            // a sealed segment of its own), as `tasklog import` does.
            let tasks = export::validate_import_bytes(&bytes, name)?;
            let report = if tasks < tasklog::store::IMPORT_STAGED_MIN_MUTATIONS as u64 {
                export::import_json_bytes(store, &bytes, name, &options, |_, _| {})?
            } else {
                export::import_json_staged_bytes(store, &bytes, name, &options, |_, _| {})?
            };
            // Imported tasks with a cron `schedule` (seed 000's scheduler) become schedules.
            if !report.dry_run {
                tasklog::runtime::schedule::adopt_imported(store, tasklog::task::Timestamp::now())?;
            }
            Ok(report)
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
