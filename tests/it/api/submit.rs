//! `POST /v1/jobs`: malformed input gets a clear error and stores nothing; an
//! idempotency key answers with its first job, in that job's true state.

use serde_json::json;

use crate::support::*;

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
async fn idempotency_key_returns_the_first_job() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let body = json!({"kind": "book", "payload": {"slot": 1}, "idempotency_key": "booking-77"});
    let first = bc.submit(body.clone(), None).await;
    assert_eq!(first.status, 202);
    let second = bc.submit(body.clone(), None).await;
    assert_eq!(second.status, 202);
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(db.count_jobs().await, 1);

    let id = first.body["id"].as_i64().unwrap();
    assert_eq!(bc.answer(id, json!({"result": "booked"})).await.status, 200);
    // Terminal now: the repeat answers 200 with the first job's result.
    let third = bc.submit(body, Some(5.0)).await;
    assert_eq!(third.status, 200);
    assert_eq!(third.body["result"], "booked");
    assert_eq!(db.count_jobs().await, 1);

    // Concurrent submits with one key create one job.
    let body = json!({"kind": "book", "idempotency_key": "race"});
    let replies =
        futures_util::future::join_all((0..10).map(|_| bc.submit(body.clone(), None))).await;
    let ids: std::collections::HashSet<_> = replies
        .iter()
        .map(|r| r.body["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(db.count_jobs().await, 2);
}

/// A repeated idempotency key answers the first job's true state: once its
/// deadline has passed it is `expired`, even if nothing looked at it before.
#[tokio::test]
async fn a_repeated_key_of_a_job_past_its_deadline_answers_expired() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let body = json!({"kind": "k", "timeout": 0.2, "idempotency_key": "once"});
    let first = bc.submit(body.clone(), None).await;
    assert_eq!(first.status, 202);
    let sql = db.client().await;
    assert!(
        eventually(LONG, || async {
            sql.query_one(
                "SELECT deadline <= now() FROM backchannel.jobs WHERE idempotency_key = 'once'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
        })
        .await
    );
    let again = bc.submit(body, None).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["state"], "expired");
}
