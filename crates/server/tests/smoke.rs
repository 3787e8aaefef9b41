//! The server starts, serves its OpenAPI document, and stops.

mod support;

#[test]
fn serves_its_openapi_document() {
    let server = support::TestServer::start();
    let resp = server.client().get("/openapi.json");
    assert_eq!(resp.status, 200, "{}", resp.text);
    let doc = resp.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
}
