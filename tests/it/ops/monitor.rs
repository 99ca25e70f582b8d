//! The monitor role: a token that reads `/v1/stats` and `/v1/listener` (and
//! so serves `backchannel status --check`), and nothing with job data: job
//! routes, submits, answers and the stream answer 403. Its tokens follow the
//! rules of the other roles, and rotate on SIGHUP.

use std::process::Command;

use serde_json::json;

use crate::support::files::TempDir;
use crate::support::procs::BrokerProcess;
use crate::support::*;

const MONITOR: &str = "test-monitor-token-00001";
const NEW_MONITOR: &str = "test-monitor-token-00002";

/// `backchannel status ARGS --server BASE --token-file FILE`, with no token
/// in the environment: its exit code and stdout.
async fn status(base: &str, token_file: &str, extra: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backchannel"));
    command
        .arg("status")
        .args(extra)
        .args([
            "--server",
            base,
            "--timeout",
            "5",
            "--token-file",
            token_file,
        ])
        .env_remove("BACKCHANNEL_SUBMITTER_TOKEN")
        .env_remove("BACKCHANNEL_TOKEN")
        .env("RUST_LOG", "off");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_monitor_token_reads_the_status_and_nothing_else() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.monitor_tokens = vec![MONITOR.to_owned()];
    let bc = instance_with(settings).await;
    let id = bc
        .submit_job("private", json!({"name": "a participant"}))
        .await;

    let as_monitor = |request: reqwest::RequestBuilder| request.bearer_auth(MONITOR);
    for path in ["/v1/stats", "/v1/listener"] {
        let r = bc.send(as_monitor(bc.http.get(bc.url(path)))).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    let job = format!("/v1/jobs/{id}");
    let refused = [
        ("GET job", as_monitor(bc.http.get(bc.url(&job)))),
        (
            "wait on job",
            as_monitor(bc.http.get(bc.url(&format!("{job}?wait=1")))),
        ),
        ("cancel", as_monitor(bc.http.delete(bc.url(&job)))),
        (
            "submit",
            as_monitor(bc.http.post(bc.url("/v1/jobs"))).json(&json!({"kind": "x"})),
        ),
        (
            "answer",
            as_monitor(bc.http.post(bc.url(&format!("{job}/result")))).json(&json!({"result": 1})),
        ),
        ("stream", as_monitor(bc.http.get(bc.url("/v1/stream")))),
    ];
    for (what, request) in refused {
        let r = bc.send(request).await;
        assert_eq!(r.status, 403, "{what}: {:?}", r.body);
        assert_eq!(r.code(), "forbidden", "{what}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("a monitor token"), "{what}: {message}");
        assert!(
            !r.text.contains("a participant"),
            "{what}: job data in a refusal"
        );
    }
    // Nothing was submitted, answered or cancelled by the refused requests.
    let r = bc.get(id, None).await;
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["payload"]["name"], "a participant");
    // The submitter still reads the status, and a listener token does not.
    let r = bc
        .send(bc.http.get(bc.url("/v1/stats")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 200);
    let r = bc
        .send(bc.http.get(bc.url("/v1/stats")).bearer_auth(LISTENER))
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("submitter or monitor"),
        "{:?}",
        r.body
    );

    // `status` and `status --check` with the monitor token from a file.
    let files = TempDir::new("monitor");
    let token_file = files.write("monitor.token", &format!("{MONITOR}\n"));
    let (code, out, err) = status(&bc.base, &token_file, &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("listener: NOT connected"), "{out}");
    assert!(out.contains("1 pending"), "{out}");
    let (code, line, err) = status(&bc.base, &token_file, &["--check"]).await;
    assert_eq!(code, 2, "no listener is CRITICAL, not UNKNOWN: {line}{err}");
    assert!(
        line.starts_with("BACKCHANNEL CRITICAL - no listener"),
        "{line}"
    );
    let _sse = bc.stream(Some("castellum")).await.expect("stream");
    let (code, line, _) = status(&bc.base, &token_file, &["--check"]).await;
    assert_eq!(code, 0, "{line}");
    assert!(line.starts_with("BACKCHANNEL OK"), "{line}");
    for output in [&out, &line, &err] {
        assert!(!output.contains(MONITOR), "the token is printed: {output}");
    }

    // A token file that is not there: UNKNOWN, naming the file.
    let missing = files.path().join("missing.token");
    let (code, line, _) = status(&bc.base, missing.to_str().unwrap(), &["--check"]).await;
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("missing.token"), "{line}");
}

#[tokio::test]
async fn monitor_tokens_follow_the_rules_and_rotate_on_sighup() {
    // Refused at start-up like the others' (by name, never the token).
    let shared = Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:9/nothing")
        .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER)
        .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER)
        .env("BACKCHANNEL_MONITOR_TOKENS", SUBMITTER)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&shared.stderr);
    assert!(!shared.status.success());
    assert!(
        stderr.contains("BACKCHANNEL_MONITOR_TOKENS") && stderr.contains("both roles"),
        "{stderr}"
    );
    assert!(!stderr.contains(SUBMITTER), "{stderr}");

    let db = TestDb::new().await;
    let files = TempDir::new("monitor-rotation");
    let file = files.write("monitor.tokens", &format!("# monitoring\n{MONITOR}\n"));
    let bc = BrokerProcess::spawn_logged(
        &db.url,
        &[
            ("BACKCHANNEL_MONITOR_TOKENS_FILE", &file),
            ("RUST_LOG", "backchannel=info"),
        ],
    )
    .await;
    let client = bc.client();
    let stats = |token: &'static str| {
        let request = client.http.get(client.url("/v1/stats")).bearer_auth(token);
        async { client.send(request).await.status }
    };
    assert_eq!(stats(MONITOR).await, 200);
    assert_eq!(stats(NEW_MONITOR).await, 401);

    files.write("monitor.tokens", &format!("{NEW_MONITOR}\n"));
    bc.signal("HUP");
    assert!(
        eventually(LONG, || async { stats(NEW_MONITOR).await == 200 }).await,
        "the new monitor token works after SIGHUP"
    );
    assert_eq!(stats(MONITOR).await, 401, "the removed one is refused");
    // Its requests' series went with it; the new token's counts from 0.
    let metrics = client.metrics().await;
    let series = |token: &str| {
        format!(
            r#"backchannel_token_requests_total{{token_id="{}",role="monitor"}}"#,
            backchannel::http::auth::TokenId::of(token)
        )
    };
    assert_eq!(
        sample(&metrics, &series(NEW_MONITOR)),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, &series(MONITOR)), None, "{metrics}");
    assert_eq!(sample(&metrics, "backchannel_tokens_stale"), Some(0.0));

    // A short one: the reload is refused and the tokens in force stay.
    files.write("monitor.tokens", &format!("{NEW_MONITOR}\nshort-mon\n"));
    bc.signal("HUP");
    assert!(
        eventually(LONG, || async {
            client
                .metrics()
                .await
                .contains(r#"backchannel_token_reloads_total{result="refused"} 1"#)
        })
        .await
    );
    assert_eq!(stats(NEW_MONITOR).await, 200);
    let metrics = client.metrics().await;
    assert_eq!(
        sample(&metrics, "backchannel_tokens_stale"),
        Some(1.0),
        "{metrics}"
    );
    let logs = bc.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("BACKCHANNEL_MONITOR_TOKENS_FILE") && logs.contains("line 2"),
        "{logs}"
    );
    for token in [MONITOR, NEW_MONITOR, "short-mon"] {
        assert!(!logs.contains(token), "a token reached the log: {logs}");
    }
}
