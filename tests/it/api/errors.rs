//! Refusals, and what every answer carries: tokens (`401`, `403`), routes,
//! ids and methods, hostile input, `Connection: close` after an unread body,
//! the hygiene headers. No error leaks SQL, a path or a token.

use serde_json::{Value, json};

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

/// A request refused before its body was read (here: no token) gets
/// `Connection: close`, since the server drops the connection after such a
/// response; a client that reused it would see its next request fail.
#[tokio::test]
async fn refusals_with_an_unread_body_close_the_connection() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let big = json!({"kind": "x", "payload": "p".repeat(200_000)});
    let refused = [
        bc.http.post(bc.url("/v1/jobs")).json(&big),
        bc.http
            .post(bc.url("/v1/jobs"))
            .bearer_auth(SUBMITTER)
            .header("content-type", "text/plain")
            .body(big.to_string()),
        bc.http.put(bc.url("/v1/jobs")).json(&big),
    ];
    for request in refused {
        let r = bc.send(request).await;
        assert!(r.status >= 400);
        assert_eq!(r.headers["connection"], "close", "{:?}", r.body);
    }
    // Answers that read the body keep the connection.
    let r = bc.submit(json!({"kind": "x"}), None).await;
    assert_eq!(r.status, 202);
    assert!(!r.headers.contains_key("connection"));
    let r = bc
        .send(bc.http.get(bc.url("/v1/jobs/1")).bearer_auth(LISTENER))
        .await;
    assert_eq!(r.status, 403);
    assert!(
        !r.headers.contains_key("connection"),
        "a refusal without a body keeps the connection"
    );
    let _: Value = r.body;
}

/// Hostile input gets a 4xx whose body names no SQL, no stack trace, no file
/// path and no token, and stores nothing.
#[tokio::test]
async fn hostile_input_gets_clean_errors() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let http = &bc.http;
    let post_json = |body: String| {
        http.post(bc.url("/v1/jobs"))
            .bearer_auth(SUBMITTER)
            .header("content-type", "application/json")
            .body(body)
    };
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let injection = "x'; DROP TABLE backchannel.jobs; --";
    let mut requests = vec![
        post_json(format!(r#"{{"kind": "{injection}"}}"#)),
        post_json(format!(
            r#"{{"kind": "x", "idempotency_key": "a\u0000{injection}"}}"#
        )),
        post_json(r#"{"kind": "x", "payload": {"a": "\u0000"}}"#.into()),
        post_json(r#"{"kind": "x", "payload": {"\u0000": 1}}"#.into()),
        post_json(r#"{"kind": "x", "payload": "\ud800"}"#.into()),
        post_json(r#"{"kind": "x", "timeout": 1e400}"#.into()),
        post_json(r#"{"kind": "x", "timeout": 1e-400}"#.into()),
        post_json(format!(r#"{{"kind": "x", "payload": {deep}}}"#)),
        post_json(format!(r#"{{"kind": "{LISTENER}!"}}"#)),
        http.post(bc.url("/v1/jobs"))
            .bearer_auth(SUBMITTER)
            .header("content-type", "application/json")
            .body(vec![b'{', 0xff, 0xfe, b'}']),
        http.post(bc.url("/v1/jobs?wait=NaN"))
            .bearer_auth(SUBMITTER)
            .json(&json!({"kind": "x"})),
        http.post(bc.url("/v1/jobs?wait=1e999"))
            .bearer_auth(SUBMITTER)
            .json(&json!({"kind": "x"})),
        http.post(bc.url("/v1/jobs?wait=%FF"))
            .bearer_auth(SUBMITTER)
            .json(&json!({"kind": "x"})),
        http.get(bc.url("/v1/stream")).bearer_auth(SUBMITTER),
        http.get(bc.url("/v1/stream"))
            .bearer_auth(format!("{SUBMITTER}x")),
        http.get(bc.url("/v1/stream"))
            .bearer_auth(LISTENER)
            .header("x-listener-id", "a\tb"),
        http.get(bc.url("/v1/stream"))
            .bearer_auth(LISTENER)
            .header("x-listener-id", "x".repeat(201)),
    ];
    for id in [
        "1%27%20OR%20%271%27=%271",
        "1;select%20pg_sleep(1)",
        "9223372036854775808",
        "-9223372036854775808",
        "0x10",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
    ] {
        requests.push(
            http.get(bc.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(SUBMITTER),
        );
        requests.push(
            http.post(bc.url(&format!("/v1/jobs/{id}/result")))
                .bearer_auth(LISTENER)
                .json(&json!({"result": injection})),
        );
    }
    let forbidden = [
        "select ",
        "insert ",
        "update ",
        "backchannel.",
        "postgres",
        "sqlstate",
        "detail",
        "panicked",
        "backtrace",
        "src/",
        ".rs",
        "/work",
        "/home",
        "/root",
        "jobs_",
        "drop table",
        &SUBMITTER.to_lowercase(),
        &LISTENER.to_lowercase(),
    ];
    for request in requests {
        let what = {
            let request = request.try_clone().unwrap().build().unwrap();
            format!("{} {}", request.method(), request.url())
        };
        let response = bc.send(request).await;
        let status = response.status;
        let body = response.text;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        let parsed: Value = serde_json::from_str(&body).expect("a JSON error body");
        assert!(parsed["error"]["code"].is_string(), "{what}: {body}");
        let lower = body.to_lowercase();
        for word in forbidden {
            assert!(!lower.contains(word), "{what}: {word:?} in {body}");
        }
    }
    assert_eq!(db.count_jobs().await, 0, "hostile input stores nothing");
}

/// `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` on API
/// answers, errors included; the stream says `no-cache` and `nosniff`.
#[tokio::test]
async fn every_response_carries_nosniff_and_no_store() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("x", json!(1)).await;
    let http = &bc.http;
    let requests = vec![
        (
            "202 submit",
            http.post(bc.url("/v1/jobs"))
                .bearer_auth(SUBMITTER)
                .json(&json!({"kind": "x"})),
        ),
        (
            "202 get",
            http.get(bc.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(SUBMITTER),
        ),
        (
            "200 cancel",
            http.delete(bc.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(SUBMITTER),
        ),
        (
            "409 cancel again",
            http.delete(bc.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(SUBMITTER),
        ),
        (
            "410 answer",
            http.post(bc.url(&format!("/v1/jobs/{id}/result")))
                .bearer_auth(LISTENER)
                .json(&json!({"result": 1})),
        ),
        (
            "400 bad JSON",
            http.post(bc.url("/v1/jobs"))
                .bearer_auth(SUBMITTER)
                .header("content-type", "application/json")
                .body("{"),
        ),
        ("401", http.get(bc.url("/v1/jobs/1"))),
        ("403", http.get(bc.url("/v1/jobs/1")).bearer_auth(LISTENER)),
        (
            "404 job",
            http.get(bc.url("/v1/jobs/999999")).bearer_auth(SUBMITTER),
        ),
        ("404 route", http.get(bc.url("/nope"))),
        ("405", http.put(bc.url("/v1/jobs"))),
        (
            "415",
            http.post(bc.url("/v1/jobs"))
                .bearer_auth(SUBMITTER)
                .body("{}"),
        ),
        ("healthz", http.get(bc.url("/healthz"))),
        ("readyz", http.get(bc.url("/readyz"))),
        ("openapi", http.get(bc.url("/openapi.json"))),
    ];
    for (name, request) in requests {
        let r = bc.send(request).await;
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{name}");
        assert_eq!(r.headers["cache-control"], "no-store", "{name}");
    }
    let stream = bc.stream(None).await.expect("the stream opens");
    assert_eq!(stream.headers["x-content-type-options"], "nosniff");
    assert_eq!(stream.headers["cache-control"], "no-cache");
}
