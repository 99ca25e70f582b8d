//! Watching it run: the agent's health listener, `status --check` as a
//! monitoring plugin, the access log and the request counts.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::agent::*;
use crate::support::procs::BrokerProcess;
use crate::support::*;

async fn get(http: &reqwest::Client, url: String) -> (u16, String) {
    let response = http.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of one sample line (`name{labels} value`) of an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn the_agent_health_listener_follows_the_stream_and_counts_jobs() {
    let db = TestDb::new().await;
    let mut bc = instance(&db).await;
    // Another listener holds the stream: the agent is told 409 and waits.
    let holder = bc.stream(Some("somebody-else")).await.expect("stream");
    let mut args = agent_args(&bc.base, None);
    args.listener_id = Some("watched-agent".into());
    args.health_bind = Some("127.0.0.1:0".parse().unwrap());
    let mut agent = RunningAgent::start(args);
    let health = format!("http://{}", agent.health.expect("a health listener"));
    let http = reqwest::Client::new();

    assert_eq!(get(&http, format!("{health}/healthz")).await.0, 200);
    assert!(
        agent.until(LONG, |s| s.busy >= 1).await,
        "the agent was refused"
    );
    let (status, body) = get(&http, format!("{health}/readyz")).await;
    assert_eq!(status, 503, "not ready before its stream opens: {body}");

    drop(holder);
    assert!(agent.until(Duration::from_secs(30), |s| s.connected).await);
    assert_eq!(get(&http, format!("{health}/readyz")).await.0, 200);

    let r = bc
        .submit(json!({"kind": "watched", "payload": 7}), Some(30.0))
        .await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert!(agent.until(LONG, |s| s.finished >= 1).await);
    let (status, metrics) = get(&http, format!("{health}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&metrics, r#"backchannel_agent_jobs_total{outcome="done"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "backchannel_agent_handler_seconds_count"),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "backchannel_agent_stream_up"), Some(1.0));
    assert_eq!(
        sample(&metrics, "backchannel_agent_stream_connects_total"),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            r#"backchannel_agent_stream_failures_total{reason="busy"}"#
        ) >= Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "backchannel_agent_jobs_in_flight"),
        Some(0.0)
    );
    assert!(sample(&metrics, "process_resident_memory_bytes") > Some(0.0));

    bc.stop().await;
    assert!(agent.until(LONG, |s| !s.connected).await, "the stream ends");
    assert_eq!(get(&http, format!("{health}/readyz")).await.0, 503);
    let (_, metrics) = get(&http, format!("{health}/metrics")).await;
    assert_eq!(sample(&metrics, "backchannel_agent_stream_up"), Some(0.0));
    // The broker ends the stream as it shuts down (`closed`; `read_error` if
    // the connection went first): one disconnect either way.
    let disconnects: f64 = ["closed", "read_error"]
        .iter()
        .filter_map(|reason| {
            let series =
                format!("backchannel_agent_stream_disconnects_total{{reason=\"{reason}\"}}");
            sample(&metrics, &series)
        })
        .sum();
    assert_eq!(disconnects, 1.0, "{metrics}");
    assert_eq!(agent.status.borrow().disconnects, 1);
    agent.stop().await;
}

/// `backchannel status --check` as a child process: its exit code and stdout.
async fn check(base: &str, token: &str, extra: &[&str]) -> (i32, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backchannel"));
    command
        .args(["status", "--check", "--server", base, "--timeout", "5"])
        .args(extra)
        .env("BACKCHANNEL_SUBMITTER_TOKEN", token)
        .env("RUST_LOG", "off");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}");
    (output.status.code().expect("an exit code"), stdout)
}

#[tokio::test]
async fn status_check_exits_ok_warning_critical_and_unknown() {
    let db = TestDb::new().await;
    // No reaper: a pending job past its deadline stays pending (and unclaimed).
    let bc = instance_with(quiet_settings(&db)).await;

    let (code, line) = check(&bc.base, SUBMITTER, &[]).await;
    assert_eq!(code, 2, "no listener is CRITICAL: {line}");
    assert!(
        line.starts_with("BACKCHANNEL CRITICAL - no listener"),
        "{line}"
    );

    let sse = bc.stream(Some("castellum")).await.expect("stream");
    let (code, line) = check(&bc.base, SUBMITTER, &[]).await;
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("BACKCHANNEL OK - listener castellum connected"),
        "{line}"
    );
    assert!(
        line.contains("| listener_connected=1;;1:;0;1 pending=0;;;0"),
        "{line}"
    );
    drop(sse);
    let held = || async {
        bc.send(bc.http.get(bc.url("/v1/listener")).bearer_auth(SUBMITTER))
            .await
            .body["held"]
            == true
    };
    assert!(
        eventually(LONG, || async { !held().await }).await,
        "the stream is gone before the next job"
    );

    // A job that nobody took before its deadline, then a listener again.
    let id = bc
        .submit(json!({"kind": "late", "timeout": 0.2}), None)
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _sse = bc
        .stream_eventually(Some("castellum"), LONG)
        .await
        .expect("stream");
    let (code, line) = check(
        &bc.base,
        SUBMITTER,
        &["--warn-pending-age", "0.3", "--crit-pending-age", "3600"],
    )
    .await;
    assert_eq!(
        code, 1,
        "a pending job older than the warning threshold: {line}"
    );
    assert!(
        line.starts_with("BACKCHANNEL WARNING - oldest pending job"),
        "{line}"
    );
    let (code, line) = check(
        &bc.base,
        SUBMITTER,
        &[
            "--warn-pending-age",
            "0.1",
            "--crit-pending-age",
            "0.3",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 2, "{line}");
    let verdict: Value = serde_json::from_str(&line).expect("--json prints JSON");
    assert_eq!(verdict["status"], "critical");
    assert_eq!(verdict["exit_code"], 2);
    assert_eq!(verdict["stats"]["jobs"]["pending"], 1, "{verdict}");
    assert_eq!(verdict["listener"]["held"], true);
    assert_eq!(bc.get(id, None).await.body["state"], "expired");

    let (code, line) = check(&bc.base, "not-a-valid-token-at-all", &[]).await;
    assert_eq!(code, 3, "a refused token is UNKNOWN: {line}");
    assert!(
        line.starts_with("BACKCHANNEL UNKNOWN - the broker refused the token"),
        "{line}"
    );
    let nowhere = unreachable_url().await;
    let (code, line) = check(nowhere.trim_end_matches("/backchannel/"), SUBMITTER, &[]).await;
    assert_eq!(code, 3, "an unreachable broker is UNKNOWN: {line}");
    assert!(
        line.starts_with("BACKCHANNEL UNKNOWN - cannot reach"),
        "{line}"
    );
}

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
        count(r#"backchannel_build_info{version="0.1.0"}"#),
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

#[tokio::test]
async fn the_oldest_pending_age_is_a_gauge() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let metrics = || async { bc.metrics().await };
    assert_eq!(
        sample(&metrics().await, "backchannel_oldest_pending_age_seconds"),
        Some(0.0)
    );
    bc.submit_job("waiting", json!(null)).await;
    assert!(
        eventually(LONG, || async {
            sample(&metrics().await, "backchannel_oldest_pending_age_seconds") > Some(0.0)
        })
        .await
    );
}
