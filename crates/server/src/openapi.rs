//! The OpenAPI document's frame: info, servers, security scheme, tags. Paths and schemas come
//! from the handlers' annotations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(
    title = "tasklog",
    description = "Durable task state with a complete audit trail, as a service."
))]
struct Base;

/// The document every module's routes are added to.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}
