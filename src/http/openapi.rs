//! The OpenAPI document: `docs/openapi.yaml`, built into the binary and served
//! as JSON at `/openapi.json`, with this instance's own limits filled in.
//!
//! `build.rs` converts the YAML to JSON at build time, so that the binary
//! carries no YAML parser (see there why).

use bytes::Bytes;
use serde_json::Value;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

use crate::config::Settings;

/// The document as written in the repository.
pub const SOURCE: &str = include_str!("../../docs/openapi.yaml");

/// The document as JSON, converted by `build.rs`.
const JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// Where the document states the largest `timeout` and `wait`.
const MAX_TIMEOUT_AT: [&str; 2] = [
    "/components/parameters/Wait/schema/maximum",
    "/components/schemas/SubmitRequest/properties/timeout/maximum",
];

/// The document as JSON, with `settings`' maximum for `timeout` and `wait`.
pub fn document(settings: &Settings) -> Value {
    let mut document: Value =
        serde_json::from_str(JSON).expect("build.rs wrote valid JSON (tested)");
    for pointer in MAX_TIMEOUT_AT {
        if let Some(maximum) = document.pointer_mut(pointer) {
            *maximum = serde_json::json!(settings.max_timeout.as_secs_f64());
        }
    }
    document
}

/// The serialised document, made once per instance.
pub fn body(settings: &Settings) -> Bytes {
    Bytes::from(serde_json::to_vec(&document(settings)).expect("a JSON value serialises"))
}

pub fn reply(body: &Bytes) -> Response {
    let mut response = Response::new(body.clone().into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
