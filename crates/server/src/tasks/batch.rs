//! `POST /v1/batch`: a list of mutations, each tagged by `op`, applied atomically: all are
//! checked first, then written as one batch that a crash leaves wholly present or wholly
//! absent. A mutation that fails leaves nothing applied.
//!
//! Each mutation is an object with `op`, `task_id` (every op but `submit`, whose id is `id`),
//! optional `expected_version` and `actor`, and the fields of the op's route body.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tasklog::store::Mutation;
use tasklog::task::Task;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::{PartialSchema, ToSchema};

use super::bodies::{
    self, Changed, CheckpointBody, CompleteBody, FailBody, OutputBody, ProgressBody, ReasonBody,
    RetryBody, StartBody, SubmitBody, UpdateBody,
};
use super::{Conditions, TAG};
use crate::error::{ApiResult, Problem};
use crate::extract::{Json, from_value};
use crate::state::AppState;

/// Most mutations in one batch.
pub const BATCH_MUTATIONS_MAX: usize = 10_000;

/// The ops of a batch.
pub const OPS: [&str; 12] = [
    "submit",
    "update",
    "start",
    "progress",
    "checkpoint",
    "output",
    "complete",
    "fail",
    "cancel",
    "requeue",
    "retry",
    "remove",
];

/// A batch of mutations.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The mutations, applied in order, all or none (at most 10,000).
    #[schema(value_type = Vec<BatchMutation>)]
    pub mutations: Vec<Map<String, Value>>,
}

/// The tasks of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Each mutation's task after the whole batch (a removed task as it was before), in the
    /// order of the mutations.
    pub tasks: Vec<Task>,
}

/// One mutation of a batch (documentation only: mutations are read by `parse_mutation`).
pub struct BatchMutation;

/// The body schema of each op.
fn op_schema(op: &str) -> RefOr<Schema> {
    match op {
        "submit" => SubmitBody::schema(),
        "update" => UpdateBody::schema(),
        "start" => StartBody::schema(),
        "progress" => ProgressBody::schema(),
        "checkpoint" => CheckpointBody::schema(),
        "output" => OutputBody::schema(),
        "complete" => CompleteBody::schema(),
        "fail" => FailBody::schema(),
        "retry" => RetryBody::schema(),
        _ => ReasonBody::schema(),
    }
}

/// One op's schema: the body's fields plus `op`, `task_id` and `expected_version`.
fn variant(op: &str) -> RefOr<Schema> {
    let op_prop = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some([op]))
        .description(Some("The operation"));
    match op_schema(op) {
        RefOr::T(Schema::Object(mut obj)) => {
            obj.title = Some(op.to_string());
            obj.properties.insert("op".into(), op_prop.into());
            obj.required.insert(0, "op".into());
            if op != "submit" {
                obj.properties.insert(
                    "task_id".into(),
                    ObjectBuilder::new()
                        .schema_type(SchemaType::new(Type::String))
                        .description(Some("The task"))
                        .into(),
                );
                obj.properties.insert(
                    "expected_version".into(),
                    ObjectBuilder::new()
                        .schema_type(SchemaType::new(Type::Integer))
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Int64,
                        )))
                        .minimum(Some(0))
                        .description(Some(
                            "Fail the batch (412) unless the task is at this version",
                        ))
                        .into(),
                );
                obj.required.insert(1, "task_id".into());
            }
            RefOr::T(Schema::Object(obj))
        }
        other => AllOfBuilder::new()
            .item(other)
            .item(ObjectBuilder::new().property("op", op_prop).required("op"))
            .into(),
    }
}

impl PartialSchema for BatchMutation {
    fn schema() -> RefOr<Schema> {
        let mut one = OneOfBuilder::new().description(Some(
            "A mutation: `op`, `task_id` (all ops but `submit`), optional `expected_version` \
             and `actor`, and the fields of the op's route body.",
        ));
        for op in OPS {
            one = one.item(variant(op));
        }
        one.into()
    }
}

impl ToSchema for BatchMutation {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        SubmitBody::schemas(out);
        UpdateBody::schemas(out);
        StartBody::schemas(out);
        ProgressBody::schemas(out);
        CheckpointBody::schemas(out);
        OutputBody::schemas(out);
        CompleteBody::schemas(out);
        FailBody::schemas(out);
        ReasonBody::schemas(out);
        RetryBody::schemas(out);
    }
}

/// Takes a field out of a mutation's object, typed.
fn take<T: DeserializeOwned>(
    m: &mut Map<String, Value>,
    key: &str,
    at: &str,
) -> ApiResult<Option<T>> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => from_value(v, &format!("{at}.{key}")).map(Some),
    }
}

fn invalid(at: String, detail: String) -> Problem {
    Problem::bad_request("invalid_input", detail).at(at)
}

/// Reads mutation `i` of a batch.
pub fn parse_mutation(
    i: usize,
    mut m: Map<String, Value>,
    cond: &Conditions,
) -> ApiResult<Mutation> {
    let at = format!("$.mutations[{i}]");
    let op: String = take(&mut m, "op", &at)?
        .ok_or_else(|| invalid(format!("{at}.op"), format!("{at}: missing field `op`")))?;
    let task_id: Option<String> = take(&mut m, "task_id", &at)?;
    let expected_version = take::<serde_json::Number>(&mut m, "expected_version", &at)?
        .map(|n| {
            let field = format!("{at}.expected_version");
            bodies::int::of(&n, bodies::int::INT64_MAX)
                .map_err(|e: serde_json::Error| invalid(field.clone(), format!("{field}: {e}")))
        })
        .transpose()?;
    let actor: Option<String> = take(&mut m, "actor", &at)?;
    let rest = Value::Object(m);
    let (change, _): Changed = match op.as_str() {
        "submit" => {
            for (field, given) in [
                ("task_id", task_id.is_some()),
                ("expected_version", expected_version.is_some()),
            ] {
                if given {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!("{at}.{field}: a submit takes no {field} (its id is `id`)"),
                    ));
                }
            }
            from_value::<SubmitBody>(rest, &at)?.into_change(&at)?
        }
        "update" => from_value::<UpdateBody>(rest, &at)?.into_change(&at)?,
        "start" => from_value::<StartBody>(rest, &at)?.into_change(&at)?,
        "progress" => from_value::<ProgressBody>(rest, &at)?.into_change(&at)?,
        "checkpoint" => from_value::<CheckpointBody>(rest, &at)?.into_change(&at)?,
        "output" => from_value::<OutputBody>(rest, &at)?.into_change(&at)?,
        "complete" => from_value::<CompleteBody>(rest, &at)?.into_change(&at)?,
        "fail" => from_value::<FailBody>(rest, &at)?.into_change(&at)?,
        "retry" => from_value::<RetryBody>(rest, &at)?.into_change(&at)?,
        "cancel" => from_value::<ReasonBody>(rest, &at)?.into_reason_change(&at, bodies::cancel)?,
        "requeue" => {
            from_value::<ReasonBody>(rest, &at)?.into_reason_change(&at, bodies::requeue)?
        }
        "remove" => from_value::<ReasonBody>(rest, &at)?.into_reason_change(&at, bodies::remove)?,
        other => {
            return Err(invalid(
                format!("{at}.op"),
                format!(
                    "{at}.op: unknown op {other:?} (expected one of {})",
                    OPS.join(", ")
                ),
            ));
        }
    };
    let mut mutation = match change {
        tasklog::store::Change::Submit(new) => Mutation::submit(new),
        change => {
            let id = task_id.ok_or_else(|| {
                invalid(
                    format!("{at}.task_id"),
                    format!("{at}: missing field `task_id`"),
                )
            })?;
            Mutation::new(id, change)
        }
    };
    mutation.expected_version = expected_version;
    mutation.actor =
        super::check_key(actor, &format!("{at}.actor"))?.or_else(|| cond.actor.clone());
    Ok(mutation)
}

/// Apply mutations atomically.
///
/// All are checked first; if any fails (404, 409, 412, 400) nothing is applied.
#[utoipa::path(
    post, path = "/v1/batch", tag = TAG, operation_id = "apply_batch",
    params(("X-Tasklog-Actor" = Option<String>, Header, nullable = false, max_length = 256, description = "Who makes the changes (for mutations without an `actor`).")),
    request_body(content = BatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Every mutation applied", body = BatchResponse),
        (status = 400, description = "Invalid body (the mutation named in `at`); nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A mutation names no task; nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A mutation's transition is not allowed, or a task exists; nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "A mutation's expected_version does not match; nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A start of a paused kind or one at its concurrency or rate limit (`throttled`); nothing applied", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<BatchBody>,
) -> ApiResult<Json<BatchResponse>> {
    let mut cond = Conditions::from_headers(&headers)?;
    if cond.expected_version.take().is_some() {
        return Err(Problem::bad_request(
            "invalid_input",
            "a batch takes no If-Match: give each mutation its expected_version",
        )
        .at("If-Match"));
    }
    if body.mutations.len() > BATCH_MUTATIONS_MAX {
        return Err(Problem::bad_request(
            "invalid_input",
            format!(
                "{} mutations, over the limit of {BATCH_MUTATIONS_MAX} per batch",
                body.mutations.len()
            ),
        )
        .at("$.mutations"));
    }
    let muts = body
        .mutations
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_mutation(i, m, &cond))
        .collect::<ApiResult<Vec<_>>>()?;
    let ids: Vec<String> = muts.iter().map(|m| m.task_id.clone()).collect();
    match state
        .run(move |s| s.batch(muts).map_err(super::absent_is_not_found))
        .await
    {
        Ok(tasks) => Ok(Json(BatchResponse { tasks })),
        Err(mut p) => {
            // Point at the first mutation of the task involved.
            if p.at.is_none()
                && let Some(i) = p
                    .task_id
                    .as_ref()
                    .and_then(|id| ids.iter().position(|x| x == id))
            {
                p.at = Some(format!("$.mutations[{i}]"));
            }
            Err(p)
        }
    }
}
