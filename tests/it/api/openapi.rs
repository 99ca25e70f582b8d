//! The OpenAPI document (`docs/openapi.yaml`, served at `/openapi.json`): it
//! parses, and it lists exactly the routes the server answers.
//!
//! Drift is caught in three places. `http::ROUTES` is the one table of routes:
//! the router refuses anything not in it before any route sees the request,
//! so a route added to the router alone is never served. The table must equal
//! the document's operations (first test). And every table entry must reach a
//! handler on a running instance, while every other method on those paths
//! gets 405 and other paths 404 (second test).

use std::collections::BTreeSet;
use std::time::Duration;

use backchannel::config::Settings;
use backchannel::http::{ROUTES, openapi};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::*;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// (METHOD, path) of every operation in the document.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for key in item.as_object().expect("a path item").keys() {
            if METHODS.iter().any(|m| m.eq_ignore_ascii_case(key)) {
                found.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

fn table() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

fn operation<'a>(document: &'a Value, method: &str, path: &str) -> &'a Value {
    &document["paths"][path][method.to_lowercase()]
}

fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target);
            }
            map.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

/// The token an operation's `security` asks for.
fn token_for(op: &Value) -> Option<&'static str> {
    let scheme = op["security"][0].as_object()?.keys().next()?.clone();
    match scheme.as_str() {
        "submitter" => Some(SUBMITTER),
        "listener" => Some(LISTENER),
        other => panic!("unknown security scheme {other}"),
    }
}

#[test]
fn the_document_lists_exactly_the_routes_table() {
    let document = openapi::document(&Settings::new("postgres://localhost/x", &[], &[]));
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        operations(&document),
        table(),
        "docs/openapi.yaml and http::ROUTES must list the same routes"
    );
    let mut targets = Vec::new();
    refs(&document, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let pointer = target.strip_prefix('#').expect("only local references");
        assert!(
            document.pointer(pointer).is_some(),
            "{target} does not resolve"
        );
    }
    let mut ids = BTreeSet::new();
    for (method, path) in table() {
        let op = operation(&document, &method, &path);
        assert!(
            ids.insert(op["operationId"].as_str().expect("an operationId")),
            "{method} {path}: operationId used twice"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success response"
        );
        assert!(
            op["security"].is_array(),
            "{method} {path}: say which token it needs (security: [] for none)"
        );
        if token_for(op).is_some() {
            for status in ["401", "403"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
        }
    }
}

/// A request that an operation accepts, from its documented security.
async fn valid_request(
    bc: &Instance,
    document: &Value,
    method: &str,
    path: &str,
) -> reqwest::RequestBuilder {
    let id = bc.submit_job("probe", json!(null)).await;
    let url = bc.url(
        &path
            .replace("{id}", &id.to_string())
            .replace("{channel}", "default"),
    );
    let op = operation(document, method, path);
    let mut request = bc
        .http
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(token) = token_for(op) {
        request = request.bearer_auth(token);
    }
    if path.ends_with("/stream") {
        // The default channel's stream at two paths: the second takes over
        // the first, whose response may not have been let go yet.
        request = request.header("x-listener-id", "openapi-probe");
    }
    if op["requestBody"].is_object() {
        let body = match path {
            "/v1/jobs" | "/v1/channels/{channel}/jobs" => json!({"kind": "probe"}),
            "/v1/jobs/{id}/result" => json!({"result": 1}),
            "/v1/hop" => {
                // A cancel forwarded by another instance, signed.
                let envelope = json!({
                    "v": 1, "to": bc.base, "from": "probe", "role": "submitter",
                    "ts": chrono::Utc::now().timestamp_millis(),
                    "op": "cancel", "id": id.to_string(),
                });
                let bytes = serde_json::to_vec(&envelope).unwrap();
                return request
                    .header("x-backchannel-hop-signature", hop_signature(&bytes))
                    .header("content-type", "application/json")
                    .body(bytes);
            }
            other => panic!("give the probe a valid body for POST {other}"),
        };
        request = request.json(&body);
    }
    request
}

#[tokio::test]
async fn the_server_answers_every_documented_route_and_refuses_the_rest() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.max_timeout = Duration::from_secs_f64(120.0);
    let bc = instance_with(settings).await;

    // Served without a token, as JSON: the repository's document with this
    // instance's maximum for timeout and wait.
    let r = bc.send(bc.http.get(bc.url("/openapi.json"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let mut served = r.body;
    let written: Value = serde_norway::from_str(openapi::SOURCE).expect("the YAML parses");
    for pointer in [
        "/components/parameters/Wait/schema/maximum",
        "/components/schemas/SubmitRequest/properties/timeout/maximum",
    ] {
        let maximum = served.pointer_mut(pointer).expect(pointer);
        assert_eq!(maximum.as_f64(), Some(120.0), "{pointer}");
        *maximum = written.pointer(pointer).expect(pointer).clone();
    }
    assert_eq!(served, written);

    // Every documented route reaches its handler and succeeds with a
    // documented status and media type.
    for (method, path) in table() {
        let request = valid_request(&bc, &served, &method, &path).await;
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let op = operation(&served, &method, &path);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {:?}",
            response.text().await
        );
        let documented = &op["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {path}: {status} is not documented"
        );
        let documented = match documented["$ref"].as_str() {
            Some(target) => served.pointer(target.strip_prefix('#').unwrap()).unwrap(),
            None => documented,
        };
        let content_type = response.headers()["content-type"].to_str().unwrap();
        let essence = content_type.split(';').next().unwrap().trim();
        assert!(
            documented["content"][essence].is_object(),
            "{method} {path}: {content_type} is not documented"
        );
    }

    // Every other method on a documented path: 405 with the documented ones in Allow.
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        let allowed: BTreeSet<&str> = ROUTES
            .iter()
            .filter(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .collect();
        let url = bc.url(&path.replace("{id}", "1").replace("{channel}", "default"));
        for method in METHODS.iter().filter(|m| !allowed.contains(*m)) {
            let request = bc
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .bearer_auth(SUBMITTER);
            let r = bc.send(request).await;
            assert_eq!(r.status, 405, "{method} {path}");
            let allow: BTreeSet<&str> = r.headers["allow"].to_str().unwrap().split(", ").collect();
            assert_eq!(allow, allowed, "{method} {path}: Allow");
        }
    }

    // Paths near the documented ones: 404.
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v1/jobs/",
        "/v1/jobs/1/",
        "/v1/jobs//result",
        "/v1/jobs/1/result/1",
        "/v1/jobs/1/cancel",
        "/v1//jobs",
        "/v2/jobs",
        "/V1/JOBS",
        "/v1/stream/1",
        "/openapi.yaml",
        "/healthz/",
        "/metrics/x",
    ] {
        for method in [Method::GET, Method::POST] {
            let r = bc
                .send(
                    bc.http
                        .request(method.clone(), bc.url(path))
                        .bearer_auth(SUBMITTER),
                )
                .await;
            assert_eq!((r.status, r.code()), (404, "not_found"), "{method} {path}");
        }
    }
}
