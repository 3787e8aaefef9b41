//! Maintenance routes under `/v1`: statistics, export (streamed), import, retention, snapshot,
//! compaction, verification and recovery of expired leases.
//!
//! Every response has the shape the CLI prints with `--json` for the same command (the CLI
//! becomes a client of these routes); where the CLI prints only text (`snapshot`, `compact`,
//! `cleanup`, `import`, `recover`) the shape is the library's own report, documented here.
//!
//! Export and import are in `transfer`, the checks of verify in `verify`, and the query and
//! parameter helpers ([`QueryParams`], [`read_body`]; JSON bodies go through `crate::extract::Json`), which turn every malformed
//! request into a 400 problem naming the parameter or JSON path, in `request` (seeds.rs uses
//! them too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tasklog::store::Stats;
use tasklog::store::{snapshot_dir, wal_dir};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, Problem};
use crate::extract::Json;
use crate::state::AppState;

mod request;
mod transfer;

pub use request::{PathParam, QueryParams, drain, read_body};
pub use tasklog::store::verify::VerifyReport;
pub use transfer::{
    ExportFormat, ImportDocument, ImportModeParam, ImportReportDoc, OnConflictParam,
};

/// This module's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(transfer::routes())
        .routes(routes!(stats))
        .routes(routes!(cleanup))
        .routes(routes!(snapshot))
        .routes(routes!(compact))
        .routes(routes!(backup_route))
        .routes(routes!(verify_route))
        .routes(routes!(recover))
}
// ----- stats ---------------------------------------------------------------------------------

/// What `tasklog stats --json` prints: the store's `Stats` with a `runtime` object beside.
/// (CLI: `crates/cli/src/commands/read.rs`, `stats`.)
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsReport {
    /// The counts and the store's health.
    #[serde(flatten)]
    pub stats: Stats,
    /// The worker runtime's figures computed from the tasks that carry a `runtime.kind`.
    pub runtime: RuntimeFigures,
    /// Schedules, one-time tasks, and schedule runs and their outcomes (`scheduled`,
    /// `one_time`, `total_runs`, `total_successes`, `total_failures`, `schedules`).
    #[serde(flatten)]
    pub schedules: tasklog::runtime::schedule::ScheduleStats,
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
    /// Attempts that ran past their timeout (known to a live runtime only; 0 here).
    #[serde(default)]
    pub timed_out: u64,
    /// Timed-out handlers abandoned (known to a live runtime only; 0 here).
    #[serde(default)]
    pub abandoned: u64,
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

/// `GET /v1/stats` query parameters (documentation; read through `QueryParams`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// Also count the tasks by this metadata key; repeatable (up to 16 keys: `by_keys` holds
    /// the counts by each, `by_key` the first's).
    #[param(min_length = 1)]
    pub by: Option<Vec<String>>,
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
    // Repeatable: counts by each key (`by_keys`), the first also in `by_key`.
    let by: Vec<String> = q
        .pairs()
        .iter()
        .filter(|(k, _)| k == "by")
        .map(|(_, v)| v.clone())
        .collect();
    if by.iter().any(String::is_empty) {
        return Err(Problem::bad_request("bad_request", "`by` must name a metadata key").at("by"));
    }
    let (stats, runtime, schedules) = state
        .run(move |store| {
            let keys: Vec<&str> = by.iter().map(String::as_str).collect();
            let stats = store.stats_by(&keys)?;
            let runtime = tasklog::runtime::health_from_store(store)?;
            let schedules = tasklog::runtime::schedule::stats(store)?;
            Ok((stats, serde_json::to_value(&runtime), schedules))
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
    let report = StatsReport {
        stats,
        runtime,
        schedules,
    };
    Ok(axum::Json(report))
}
// ----- cleanup, snapshot, compact, recover ---------------------------------------------------

/// `POST /v1/cleanup` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Remove terminal tasks (completed, failed, cancelled) that finished more than this many
    /// seconds ago.
    #[serde(deserialize_with = "crate::extract::int::u64")]
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub older_than_secs: u64,
    /// Only tasks in these terminal states (default: completed, failed and cancelled).
    #[serde(default)]
    pub states: Option<Vec<CleanupState>>,
    /// The time compared with the age (default `finished`).
    #[serde(default)]
    pub by: Option<CleanupBy>,
}

/// A terminal state retention may remove.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CleanupState {
    /// Completed tasks.
    Completed,
    /// Failed tasks.
    Failed,
    /// Cancelled tasks.
    Cancelled,
    /// Discarded tasks (failed on their last attempt).
    Discarded,
}

/// Which time of a task retention compares.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CleanupBy {
    /// When it finished.
    Finished,
    /// When it last ran (its last attempt's start): seed 000's `last_run`.
    LastRun,
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
    Json(req): Json<CleanupRequest>,
) -> ApiResult<axum::Json<CleanupResponse>> {
    let age = Duration::from_secs(req.older_than_secs);
    let removed = if req.states.is_none() && req.by.is_none() {
        state.run(move |store| store.cleanup(age)).await?
    } else {
        use tasklog::TaskState;
        use tasklog::store::{CleanupAge, CleanupRule};
        let states = req.states.map_or_else(
            || {
                vec![
                    TaskState::Completed,
                    TaskState::Failed,
                    TaskState::Cancelled,
                    TaskState::Discarded,
                ]
            },
            |s| {
                s.into_iter()
                    .map(|s| match s {
                        CleanupState::Completed => TaskState::Completed,
                        CleanupState::Failed => TaskState::Failed,
                        CleanupState::Cancelled => TaskState::Cancelled,
                        CleanupState::Discarded => TaskState::Discarded,
                    })
                    .collect()
            },
        );
        let rule = CleanupRule::default()
            .states(states)
            .older_than(age)
            .age(match req.by {
                Some(CleanupBy::LastRun) => CleanupAge::LastRun,
                _ => CleanupAge::Finished,
            });
        state.run(move |store| store.cleanup_by(&rule)).await?
    };
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

/// What an online backup wrote (`tasklog::store::backup::RotatedBackup`).
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupResponse {
    /// The new backup directory (a store, with its `BACKUP` manifest).
    pub dir: String,
    /// The LSN of the last event it holds.
    pub lsn: u64,
    /// Tasks in it.
    pub tasks: u64,
    /// Size of its snapshot file in bytes.
    pub snapshot_bytes: u64,
    /// Older complete backups removed to keep the newest `--backup-keep`.
    pub removed: Vec<String>,
    /// Interrupted backups (no valid manifest) removed.
    pub interrupted_removed: Vec<String>,
}

/// Writes an online backup now into the server's backup directory (`tasklog serve
/// --backup-dir`), rotated like the scheduled ones (the newest `--backup-keep` kept). Writers go
/// on meanwhile. Refused (409 `backups_not_configured`) when the server has no backup
/// directory: a request never names a server-side path.
#[utoipa::path(
    post,
    path = "/v1/admin/backup",
    operation_id = "v1_admin_backup",
    tag = "maintenance",
    responses(
        (status = 200, description = "The backup written and verified", body = BackupResponse),
        (status = 409, description = "No backup directory configured, or another backup is being written there", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Poisoned or shutting down", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn backup_route(
    State(state): State<AppState>,
    body: Body,
) -> ApiResult<axum::Json<BackupResponse>> {
    drain(body).await;
    let Some(schedule) = state.options().backups.clone() else {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "backups_not_configured",
            "this server has no backup directory: start it with --backup-every and --backup-dir",
        ));
    };
    let (dir, keep) = (schedule.dir.clone(), schedule.keep);
    let done = state
        .run(move |store| Ok(tasklog::store::backup::backup_rotate(store, &dir, keep)))
        .await?;
    let r = match done {
        Ok(r) => r,
        Err(tasklog::Error::Locked { .. }) => {
            return Err(Problem::new(
                axum::http::StatusCode::CONFLICT,
                "backup_in_progress",
                format!(
                    "another backup is being written to {}",
                    schedule.dir.display()
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let show = |v: Vec<std::path::PathBuf>| v.iter().map(|p| p.display().to_string()).collect();
    Ok(axum::Json(BackupResponse {
        dir: r.backup.dir.display().to_string(),
        lsn: r.backup.lsn,
        tasks: r.backup.tasks,
        snapshot_bytes: r.backup.snapshot_bytes,
        removed: show(r.removed),
        interrupted_removed: show(r.interrupted_removed),
    }))
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
    let report = state
        .run(|store| tasklog::store::verify::verify_beside_writer(store.dir()))
        .await?;
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
