//! Authentication and malformed input: clear errors, nothing stored.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn tokens_401_and_403_for_each_endpoint_family() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("x", json!(null)).await;
    let http = &bc.http;
    let submitter_endpoints = vec![
        http.post(bc.url("/v1/jobs")).json(&json!({"kind": "x"})),
        http.get(bc.url(&format!("/v1/jobs/{id}"))),
        http.delete(bc.url(&format!("/v1/jobs/{id}"))),
    ];
    let listener_endpoints = vec![
        http.get(bc.url("/v1/stream")),
        http.post(bc.url(&format!("/v1/jobs/{id}/result")))
            .json(&json!({"result": 1})),
    ];
    for (endpoints, wrong_role) in [
        (submitter_endpoints, LISTENER),
        (listener_endpoints, SUBMITTER),
    ] {
        for request in endpoints {
            let none = bc.send(request.try_clone().unwrap()).await;
            assert_eq!(none.status, 401, "{:?}", none.body);
            assert_eq!(none.code(), "unauthorized");
            assert!(
                none.headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            let bad = bc
                .send(
                    request
                        .try_clone()
                        .unwrap()
                        .bearer_auth("not-a-valid-token-at-all"),
                )
                .await;
            assert_eq!(bad.status, 401);
            let basic = bc
                .send(
                    request
                        .try_clone()
                        .unwrap()
                        .basic_auth("user", Some(SUBMITTER)),
                )
                .await;
            assert_eq!(basic.status, 401);
            let other = bc.send(request.bearer_auth(wrong_role)).await;
            assert_eq!(other.status, 403, "{:?}", other.body);
            assert_eq!(other.code(), "forbidden");
        }
    }
    // Nothing changed: one job, still pending.
    assert_eq!(db.count_jobs().await, 1);
    assert_eq!(bc.get(id, None).await.body["state"], "pending");
    // The error never echoes a token.
    let r = bc
        .send(http.get(bc.url("/v1/stream")).bearer_auth(SUBMITTER))
        .await;
    assert!(!r.body.to_string().contains(SUBMITTER));
}

#[tokio::test]
async fn malformed_submits_are_refused_and_store_nothing() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.max_body = 4096;
    let bc = instance_with(settings).await;
    let post = || bc.http.post(bc.url("/v1/jobs")).bearer_auth(SUBMITTER);
    let json_post = || post().header("content-type", "application/json");

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "not JSON",
            json_post().body("{kind: x"),
            400,
            "invalid_json",
        ),
        ("empty body", json_post().body(""), 400, "invalid_json"),
        ("array", json_post().body("[1]"), 400, "invalid_body"),
        ("missing kind", json_post().body("{}"), 400, "invalid_field"),
        (
            "kind not a string",
            json_post().body(r#"{"kind": 5}"#),
            400,
            "invalid_field",
        ),
        (
            "kind empty",
            json_post().body(r#"{"kind": ""}"#),
            400,
            "invalid_field",
        ),
        (
            "kind bad characters",
            json_post().body(r#"{"kind": "a b"}"#),
            400,
            "invalid_field",
        ),
        (
            "kind too long",
            json_post().body(format!(r#"{{"kind": "{}"}}"#, "k".repeat(201))),
            400,
            "invalid_field",
        ),
        (
            "timeout zero",
            json_post().body(r#"{"kind": "x", "timeout": 0}"#),
            400,
            "invalid_field",
        ),
        (
            "timeout negative",
            json_post().body(r#"{"kind": "x", "timeout": -1}"#),
            400,
            "invalid_field",
        ),
        (
            "timeout string",
            json_post().body(r#"{"kind": "x", "timeout": "5"}"#),
            400,
            "invalid_field",
        ),
        (
            "timeout over max",
            json_post().body(r#"{"kind": "x", "timeout": 3601}"#),
            400,
            "invalid_field",
        ),
        (
            "key empty",
            json_post().body(r#"{"kind": "x", "idempotency_key": ""}"#),
            400,
            "invalid_field",
        ),
        (
            "key too long",
            json_post().body(format!(
                r#"{{"kind": "x", "idempotency_key": "{}"}}"#,
                "k".repeat(201)
            )),
            400,
            "invalid_field",
        ),
        (
            "key number",
            json_post().body(r#"{"kind": "x", "idempotency_key": 7}"#),
            400,
            "invalid_field",
        ),
        (
            "unknown field",
            json_post().body(r#"{"kind": "x", "timout": 5}"#),
            400,
            "unknown_field",
        ),
        (
            "wait negative",
            bc.http
                .post(bc.url("/v1/jobs?wait=-1"))
                .bearer_auth(SUBMITTER)
                .json(&json!({"kind": "x"})),
            400,
            "invalid_query",
        ),
        (
            "wait not a number",
            bc.http
                .post(bc.url("/v1/jobs?wait=soon"))
                .bearer_auth(SUBMITTER)
                .json(&json!({"kind": "x"})),
            400,
            "invalid_query",
        ),
        (
            "too large",
            json_post().body(format!(
                r#"{{"kind": "x", "payload": "{}"}}"#,
                "p".repeat(5000)
            )),
            413,
            "payload_too_large",
        ),
        (
            "no content type",
            post().body(r#"{"kind": "x"}"#),
            415,
            "unsupported_media_type",
        ),
        (
            "text content type",
            post()
                .header("content-type", "text/plain")
                .body(r#"{"kind": "x"}"#),
            415,
            "unsupported_media_type",
        ),
    ];
    for (name, request, status, code) in cases {
        let r = bc.send(request).await;
        assert_eq!(r.status, status, "{name}: {:?}", r.body);
        assert_eq!(r.code(), code, "{name}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}"
        );
    }
    // A field-level message names the field.
    let r = bc
        .send(json_post().body(r#"{"kind": "x", "timeout": -1}"#))
        .await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout")
    );

    // A chunked body without Content-Length over the limit is refused too.
    let chunks =
        futures_util::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1000])));
    let r = bc
        .send(json_post().body(reqwest::Body::wrap_stream(chunks)))
        .await;
    assert_eq!(r.status, 413);

    assert_eq!(db.count_jobs().await, 0, "bad input stores nothing");

    // The same limits guard the answer endpoint.
    let id = bc.submit_job("x", json!(null)).await;
    let answer = |body: &'static str| {
        bc.http
            .post(bc.url(&format!("/v1/jobs/{id}/result")))
            .bearer_auth(LISTENER)
            .header("content-type", "application/json")
            .body(body)
    };
    for (body, status) in [
        ("{", 400),
        ("{}", 400),
        (r#"{"result": 1, "error": 2}"#, 400),
        (r#"{"result": 1, "extra": 2}"#, 400),
        ("[1]", 400),
    ] {
        assert_eq!(bc.send(answer(body)).await.status, status, "{body}");
    }
    assert_eq!(bc.get(id, None).await.body["state"], "pending");
}

#[tokio::test]
async fn routes_ids_and_methods() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let r = bc
        .send(bc.http.get(bc.url("/nope")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    let r = bc
        .send(bc.http.put(bc.url("/v1/jobs")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "method_not_allowed");
    for bad in ["abc", "-1", "0", "1.5", "99999999999999999999999", "%20"] {
        let r = bc
            .send(
                bc.http
                    .get(bc.url(&format!("/v1/jobs/{bad}")))
                    .bearer_auth(SUBMITTER),
            )
            .await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_id");
    }
    let r = bc.send(bc.http.get(bc.url("/healthz"))).await;
    assert_eq!(r.status, 200);
    let r = bc.send(bc.http.get(bc.url("/readyz"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
}
