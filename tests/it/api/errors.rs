//! Safe at the edge: no personal data in the logs, hygiene headers on every
//! response, and errors that leak nothing.

use serde_json::{Value, json};

use crate::support::procs::BrokerProcess;
use crate::support::*;

/// A whole round trip, plus refused requests, at debug level for every crate
/// (dependencies included) leaves no payload, result, error, idempotency key
/// or token in the logs; ids, kinds and states are there.
#[tokio::test]
async fn debug_logs_carry_no_payload_result_error_or_token() {
    let db = TestDb::new().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let secret = |what: &str| format!("{what}-{marker}");
    let submitter_token = secret("submitter-token");
    let listener_token = secret("listener-token");
    let submitters = format!("{SUBMITTER},{submitter_token}");
    let listeners = format!("{LISTENER},{listener_token}");
    let broker = BrokerProcess::spawn_logged(
        &db.url,
        &[
            ("RUST_LOG", "debug"),
            ("BACKCHANNEL_SUBMITTER_TOKENS", &submitters),
            ("BACKCHANNEL_LISTENER_TOKENS", &listeners),
        ],
    )
    .await;
    let http = &broker.http;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    };

    let response = http
        .get(broker.url("/v1/stream"))
        .bearer_auth(&listener_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = Sse::new(response);

    let submit = |payload: Value, key: String| {
        http.post(broker.url("/v1/jobs"))
            .bearer_auth(&submitter_token)
            .json(&json!({"kind": "person.lookup", "payload": payload, "idempotency_key": key}))
    };
    let answer = |id: &Value, body: Value| {
        http.post(broker.url(&format!("/v1/jobs/{id}/result")))
            .bearer_auth(&listener_token)
            .json(&body)
    };

    // One job answered with a result, one with an error.
    let payload = json!({"name": secret("payload"), "nested": [{"email": secret("payload")}]});
    let (status, first) = send(submit(payload.clone(), secret("key-1"))).await;
    assert_eq!(status, 202, "{first}");
    let (status, second) = send(submit(payload, secret("key-2"))).await;
    assert_eq!(status, 202, "{second}");
    for expected in [&first["id"], &second["id"]] {
        let job = stream.next_job(LONG).await.expect("the job on the stream");
        assert_eq!(&job["id"], expected);
        assert_eq!(job["payload"]["name"], secret("payload"));
    }
    let (status, done) = send(answer(
        &first["id"],
        json!({"result": {"found": secret("result")}}),
    ))
    .await;
    assert_eq!((status, done["state"].as_str()), (200, Some("done")));
    let (status, failed) = send(answer(
        &second["id"],
        json!({"error": {"reason": secret("error")}}),
    ))
    .await;
    assert_eq!((status, failed["state"].as_str()), (200, Some("failed")));
    // A replay, and a different answer to an answered job.
    send(answer(
        &first["id"],
        json!({"result": {"found": secret("result")}}),
    ))
    .await;
    let (status, _) = send(answer(
        &first["id"],
        json!({"result": {"other": secret("result")}}),
    ))
    .await;
    assert_eq!(status, 409);
    let (status, read) = send(
        http.get(broker.url(&format!("/v1/jobs/{}?wait=5", first["id"])))
            .bearer_auth(&submitter_token),
    )
    .await;
    assert_eq!(
        (status, &read["result"]["found"]),
        (200, &json!(secret("result")))
    );

    // Refused requests carrying secrets: an unknown token, malformed JSON,
    // a payload the database could not store, an unknown field.
    let (status, _) = send(
        http.get(broker.url("/v1/jobs/1"))
            .bearer_auth(secret("unknown-token")),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.post(broker.url("/v1/jobs"))
            .bearer_auth(&submitter_token)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"kind": "x", "payload": "{}"#,
                secret("payload")
            )),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(submit(
        json!({"name": format!("{}\u{0}", secret("payload"))}),
        secret("key-3"),
    ))
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(
        http.post(broker.url("/v1/jobs"))
            .bearer_auth(&submitter_token)
            .json(&json!({"kind": "x", secret("payload"): 1})),
    )
    .await;
    assert_eq!(status, 400);

    // Closing the stream logs a line after everything above: once it is read,
    // so is every line written before it.
    drop(stream);
    assert!(
        eventually(LONG, || async { logs(&broker).contains("stream closed") }).await,
        "the broker logs the stream's end"
    );

    let logs = logs(&broker);
    let leaked: Vec<&str> = logs.lines().filter(|l| l.contains(&marker)).collect();
    assert!(
        leaked.is_empty(),
        "personal data or a token in the logs:\n{}",
        leaked.join("\n")
    );
    // The logs are not empty: the job's life is there, by id and state, and
    // dependencies log at debug level too.
    assert!(logs.contains("job submitted"), "{logs}");
    assert!(logs.contains("job answered"), "{logs}");
    assert!(logs.contains("tokio_postgres"), "{logs}");
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
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = http.execute(request).await.expect("request");
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
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

fn logs(broker: &BrokerProcess) -> String {
    broker.logs.lock().unwrap().join("\n")
}
