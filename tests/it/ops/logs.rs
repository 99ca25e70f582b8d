//! The logs: the access log by route template (and off when asked), with
//! who asked (client, token id) and which job; JSON lines that carry the job
//! id, a fatal error as JSON, and no personal data or token even at debug
//! level for every crate.

use serde_json::{Value, json};

use crate::support::procs::BrokerProcess;
use crate::support::*;

#[tokio::test]
async fn requests_are_logged_by_route_template_and_counted() {
    let db = TestDb::new().await;
    let bc = BrokerProcess::spawn_logged(
        &db.url,
        &[("BACKCHANNEL_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
    )
    .await;
    let client = bc.client();
    let secret_path = "/private-looking-path-4711";
    let r = client
        .send(
            client
                .http
                .get(client.url("/v1/jobs/98765431?wait=0.1"))
                .bearer_auth(SUBMITTER),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = client
        .send(
            client
                .http
                .get(client.url(secret_path))
                .bearer_auth(SUBMITTER),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = client
        .send(
            client
                .http
                .get(client.url("/v1/stats"))
                .bearer_auth("wrong-token-0000000000"),
        )
        .await;
    assert_eq!(r.status, 401);

    let access = || {
        bc.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["target"] == "backchannel::access")
            .map(|l| l["fields"].clone())
            .collect::<Vec<_>>()
    };
    // Each line is written once its response has been sent, which may be a
    // moment after the client has it: wait for the three of them.
    let logged = |lines: &[Value]| {
        lines.iter().any(|l| l["route"] == "/v1/jobs/{id}")
            && lines.iter().any(|l| l["route"] == "(unmatched)")
            && lines.iter().any(|l| l["route"] == "/v1/stats")
    };
    assert!(eventually(LONG, || async { logged(&access()) }).await);
    let lines = access();
    let job = lines
        .iter()
        .find(|l| l["route"] == "/v1/jobs/{id}")
        .expect("the job read is logged by its template");
    assert_eq!(job["method"], "GET");
    assert_eq!(job["status"], 404);
    assert!(job["bytes"].as_u64().unwrap() > 0 && job["duration_ms"].is_number());
    assert!(
        lines
            .iter()
            .any(|l| l["route"] == "(unmatched)" && l["status"] == 404)
    );
    assert!(
        lines
            .iter()
            .any(|l| l["route"] == "/v1/stats" && l["status"] == 401)
    );
    let all = bc.logs.lock().unwrap().join("\n");
    for never in [
        "98765431",
        "wait=",
        secret_path,
        SUBMITTER,
        "wrong-token-0000000000",
    ] {
        assert!(!all.contains(never), "{never} reached the log: {all}");
    }

    let metrics = client.metrics().await;
    let count = |series: &str| sample(&metrics, series);
    assert_eq!(
        count(
            r#"backchannel_http_requests_total{method="GET",route="/v1/jobs/{id}",status="404"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        count(r#"backchannel_http_refused_total{reason="unauthorized"}"#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"backchannel_http_refused_total{reason="not_found"}"#),
        Some(2.0)
    );
    assert_eq!(
        count(&format!(
            r#"backchannel_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        )),
        Some(1.0)
    );
    assert_eq!(count("backchannel_ready"), Some(1.0));
    assert!(count("process_open_fds") > Some(0.0));
    assert!(count("process_resident_memory_bytes") > Some(0.0));
}

#[tokio::test]
async fn the_access_log_can_be_turned_off() {
    let db = TestDb::new().await;
    let bc = BrokerProcess::spawn_logged(
        &db.url,
        &[
            ("BACKCHANNEL_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("BACKCHANNEL_ACCESS_LOG", "off"),
        ],
    )
    .await;
    let client = bc.client();
    assert_eq!(client.get(1, None).await.status, 404);
    // A later request on the same connection logs "stream opened": by then the
    // first request's line would have been written.
    let _sse = client.stream(None).await.expect("stream");
    let logged = |message: &'static str| {
        let logs = bc.logs.lock().unwrap();
        logs.iter().any(|l| l.contains(message))
    };
    assert!(eventually(LONG, || async { logged("stream opened") }).await);
    assert!(
        !logged("backchannel::access"),
        "{:?}",
        bc.logs.lock().unwrap()
    );
}

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
    let client = broker.client();
    let send = |request: reqwest::RequestBuilder| {
        let client = &client;
        async move {
            let reply = client.send(request).await;
            (reply.status, reply.body)
        }
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

#[tokio::test]
async fn json_logs_parse_and_carry_the_job_id() {
    let db = TestDb::new().await;
    let bc = BrokerProcess::spawn_logged(
        &db.url,
        &[
            ("BACKCHANNEL_LOG_FORMAT", "json"),
            ("RUST_LOG", "backchannel=debug"),
        ],
    )
    .await;
    let client = bc.client();
    let mut sse = client.stream(None).await.expect("stream");
    let id = client.submit_job("logged", json!({"x": 1})).await;
    sse.next_job(LONG).await.expect("job");
    assert_eq!(client.answer(id, json!({"result": 2})).await.status, 200);
    let carries_id = |line: &Value| line["fields"]["job_id"] == id;
    assert!(
        eventually(LONG, || async {
            let logs = bc.logs.lock().unwrap().clone();
            let parsed: Vec<Value> = logs
                .iter()
                .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
                .collect();
            ["job submitted", "job sent", "job answered"]
                .iter()
                .all(|m| {
                    parsed
                        .iter()
                        .any(|l| carries_id(l) && l["fields"]["message"] == *m)
                })
        })
        .await,
        "submit, send and answer are logged with the job id: {:?}",
        bc.logs.lock().unwrap()
    );
}

fn logs(broker: &BrokerProcess) -> String {
    broker.logs.lock().unwrap().join("\n")
}

/// The first 12 hex digits of a token's SHA-256, as an operator computes
/// them: `printf %s "$token" | sha256sum | cut -c1-12`.
fn token_id(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn json_access_lines_say_who_and_which_job_and_never_the_token() {
    let db = TestDb::new().await;
    let bc = BrokerProcess::spawn_logged(
        &db.url,
        &[
            ("BACKCHANNEL_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("BACKCHANNEL_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
        ],
    )
    .await;
    let client = bc.client();
    let mut sse = client.stream(None).await.expect("stream");
    // A submit through the trusted proxy (the test): the client is the
    // nearest untrusted address of X-Forwarded-For, not the first one.
    let r = client
        .send(
            client
                .submit_request(&json!({"kind": "audited"}), None)
                .header("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.1.1"),
        )
        .await;
    assert_eq!(r.status, 202);
    let id = r.body["id"].as_i64().unwrap();
    sse.next_job(LONG).await.expect("job");
    assert_eq!(client.answer(id, json!({"result": 1})).await.status, 200);
    assert_eq!(client.get(id, None).await.status, 200);
    // An unknown token: no token id.
    let r = client
        .send(
            client
                .http
                .get(client.url("/v1/stats"))
                .bearer_auth("unknown-token-00000000"),
        )
        .await;
    assert_eq!(r.status, 401);

    let access = || {
        bc.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["target"] == "backchannel::access")
            .map(|l| l["fields"].clone())
            .collect::<Vec<_>>()
    };
    let find = |lines: &[Value], method: &str, route: &str| {
        lines
            .iter()
            .find(|l| l["method"] == method && l["route"] == route)
            .cloned()
    };
    assert!(
        eventually(LONG, || async {
            let lines = access();
            [
                ("POST", "/v1/jobs"),
                ("POST", "/v1/jobs/{id}/result"),
                ("GET", "/v1/jobs/{id}"),
                ("GET", "/v1/stats"),
            ]
            .iter()
            .all(|(m, r)| find(&lines, m, r).is_some())
        })
        .await,
        "{:?}",
        access()
    );
    let lines = access();
    let submit = find(&lines, "POST", "/v1/jobs").unwrap();
    assert_eq!(submit["client"], "203.0.113.9", "{submit}");
    assert_eq!(submit["token_id"], token_id(SUBMITTER), "{submit}");
    assert_eq!(submit["role"], "submitter");
    assert_eq!(submit["job_id"], id, "{submit}");
    let answer = find(&lines, "POST", "/v1/jobs/{id}/result").unwrap();
    assert_eq!(
        answer["client"], "127.0.0.1",
        "no X-Forwarded-For: the peer"
    );
    assert_eq!(answer["token_id"], token_id(LISTENER));
    assert_eq!(answer["role"], "listener");
    assert_eq!(answer["job_id"], id);
    let read = find(&lines, "GET", "/v1/jobs/{id}").unwrap();
    assert_eq!(read["job_id"], id);
    let refused = find(&lines, "GET", "/v1/stats").unwrap();
    assert_eq!(refused["status"], 401);
    assert!(refused.get("token_id").is_none(), "{refused}");
    assert!(refused.get("job_id").is_none(), "{refused}");
    // The start-up line names the version and the schema's.
    let started = bc
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "backchannel listening")
        .expect("the start-up line");
    assert_eq!(started["fields"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        started["fields"]["schema_version"],
        backchannel::store::migrate::latest()
    );
    let all = bc.logs.lock().unwrap().join("\n");
    for never in [SUBMITTER, LISTENER, "unknown-token-00000000", "6.6.6.6"] {
        assert!(!all.contains(never), "{never} reached the log");
    }

    // Requests per configured token, from 0: the rotation procedure's check.
    let metrics = client.metrics().await;
    let count = |token: &str, role: &str| {
        sample(
            &metrics,
            &format!(
                r#"backchannel_token_requests_total{{token_id="{}",role="{role}"}}"#,
                token_id(token)
            ),
        )
    };
    assert_eq!(count(SUBMITTER, "submitter"), Some(2.0), "{metrics}");
    assert!(count(LISTENER, "listener") >= Some(2.0), "{metrics}");
    assert!(!metrics.contains(&token_id("unknown-token-00000000")));
}

#[test]
fn a_fatal_start_up_error_in_json_format_is_json() {
    let port = crate::support::procs::free_port();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://nobody:pw-4711@127.0.0.1:{port}/x"),
        )
        .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER)
        .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER)
        .env("BACKCHANNEL_LOG_FORMAT", "json")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let fatal = lines
        .iter()
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error line, even with RUST_LOG=off: {stderr}"));
    let error = fatal["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{port}")) && error.contains("connection refused"),
        "{error}"
    );
    assert!(
        !stderr.contains("pw-4711") && !stderr.contains(SUBMITTER),
        "{stderr}"
    );
}
