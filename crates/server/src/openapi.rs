//! The OpenAPI document's frame: info, security scheme, tags. Paths and schemas come from the
//! handlers' annotations; [`finish`] adds what every operation shares (the token, the error
//! answers of the layers) so that each handler lists only its own answers.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tasklog",
        description = "Durable task state with a complete audit trail, as a service. Every change \
                       answered 2xx is durable (fdatasync'd) before the answer; errors are \
                       `application/problem+json` (RFC 9457) with a stable `code`."
    ),
    modifiers(&Security),
    security(("bearer" = [])),
    components(schemas(Problem)),
    tags(
        (name = "tasks", description = "Submit, read, list, change and remove tasks; atomic batches."),
        (name = "workers", description = "The worker protocol: claim with long-poll, heartbeat, fenced writes."),
        (name = "events", description = "Server-Sent Events of committed events."),
        (name = "maintenance", description = "Statistics, export, import, retention, snapshots, verification, recovery."),
        (name = "health", description = "Liveness, readiness, metrics, this document."),
        (name = "legacy", description = "Endpoints of the systems tasklog replaces."),
    )
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>` on every route but `/livez`, when the \
                         server has a token",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document every module's routes are added to.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// A `problem+json` answer.
pub fn problem_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

/// Adds what every operation shares: `/livez` needs no token; every other operation may answer
/// 401 (token), 500 (the store failed) and 503 (shutting down, poisoned, timed out); one with a
/// body may answer 400, 413 and 415; one with parameters 400.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = crate::auth::OPEN_ROUTES.contains(&path.as_str());
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            finish_operation(op, open);
        }
    }
}

fn finish_operation(op: &mut Operation, open: bool) {
    let has_body = op.request_body.is_some();
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem_response(description));
    };
    if open {
        op.security = Some(vec![SecurityRequirement::default()]);
    } else {
        add("401", "No or wrong bearer token (`unauthorized`)");
    }
    if has_body {
        add(
            "400",
            "Invalid body (`bad_request`, `invalid_input`; `at` names the JSON path)",
        );
        add(
            "413",
            "The body is larger than the server accepts (`too_large`)",
        );
        add("415", "The body is not JSON (`unsupported_media_type`)");
    } else if has_params {
        add("400", "Invalid parameter (`invalid_input`; `at` names it)");
    }
    add("500", "The store failed (`store_error`)");
    add(
        "503",
        "Shutting down (`shutting_down`), poisoned by an I/O failure (`poisoned`) or over the \
         request time limit (`timeout`); see `Retry-After`",
    );
}

/// Fits the generic document to one server: without a token no operation needs the bearer
/// scheme (and none answers 401); a page's `limit` is at most the server's page limit.
pub fn for_server(doc: &mut serde_json::Value, options: &crate::options::ServerOptions) {
    use serde_json::Value;
    if options.token.is_none()
        && let Some(root) = doc.as_object_mut()
    {
        root.remove("security");
        if let Some(Value::Object(paths)) = root.get_mut("paths") {
            for op in paths
                .values_mut()
                .filter_map(Value::as_object_mut)
                .flat_map(|i| i.values_mut())
            {
                if let Some(op) = op.as_object_mut() {
                    op.remove("security");
                    if let Some(Value::Object(r)) = op.get_mut("responses") {
                        r.remove("401");
                    }
                }
            }
        }
    }
    let max = options.max_page_size;
    // Every page's `limit` (the listing's, seed 001's `/api/tasks/persistent`).
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        let params = paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|i| i.values_mut())
            .filter_map(|op| op.get_mut("parameters").and_then(Value::as_array_mut))
            .flatten();
        for p in params.filter(|p| p["name"] == "limit" && p["in"] == "query") {
            if let Some(schema) = p.get_mut("schema").and_then(Value::as_object_mut) {
                schema.insert("maximum".into(), Value::from(max));
            }
        }
    }
}
