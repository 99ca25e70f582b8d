//! Operations: metrics, the listener and stats views, JSON logs, the CLI.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::procs::BrokerProcess;
use crate::support::*;

/// Every sample of the exposition, keyed by name and sorted labels.
async fn scrape(bc: &Instance) -> HashMap<String, f64> {
    let response = bc.http.get(bc.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut samples = HashMap::new();
    for sample in parsed.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let key = format!("{}{{{}}}", sample.metric, labels.join(","));
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map(|b| b.count).unwrap_or(0.0)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        samples.insert(key, value);
    }
    samples
}

fn get(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_by_exactly_what_happened() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let other = instance(&db).await;
    let before = scrape(&bc).await;
    assert!(before.contains_key("backchannel_requests_waiting{}"));
    assert!(before.contains_key("backchannel_db_pool_size{}"));
    assert!(before.contains_key("backchannel_pg_notification_queue_usage{}"));
    assert_eq!(get(&before, "backchannel_stream_connected{}"), 0.0);
    assert_eq!(get(&before, "backchannel_listen_connected{}"), 1.0);

    // A round trip.
    let mut sse = bc.stream(None).await.expect("stream");
    let id = bc.submit_job("m", json!(1)).await;
    sse.next_job(LONG).await.expect("job");
    assert_eq!(bc.answer(id, json!({"result": 1})).await.status, 200);
    // An expiry, seen by a waiter.
    let r = bc
        .submit(json!({"kind": "m", "timeout": 0.2}), Some(10.0))
        .await;
    assert_eq!(r.body["state"], "expired");
    // A conflict.
    assert_eq!(other.stream(None).await.err().unwrap().status, 409);
    assert_eq!(bc.stream(None).await.err().unwrap().status, 409);

    let after = scrape(&bc).await;
    let delta = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(delta("backchannel_jobs_submitted_total{}"), 2.0);
    assert_eq!(delta("backchannel_jobs_finished_total{outcome=done}"), 1.0);
    assert_eq!(
        delta("backchannel_jobs_finished_total{outcome=expired}"),
        1.0
    );
    assert_eq!(
        delta("backchannel_jobs_finished_total{outcome=failed}"),
        0.0
    );
    assert_eq!(delta("backchannel_round_trip_seconds_count{}"), 2.0);
    assert_eq!(delta("backchannel_stream_connects_total{}"), 1.0);
    assert_eq!(
        delta("backchannel_stream_conflicts_total{}"),
        1.0,
        "one of the two conflicts was on this instance"
    );
    assert_eq!(get(&after, "backchannel_stream_connected{}"), 1.0);
    let other_after = scrape(&other).await;
    assert_eq!(
        get(&other_after, "backchannel_stream_conflicts_total{}"),
        1.0
    );
    assert_eq!(get(&other_after, "backchannel_stream_connected{}"), 0.0);
    // Both terminal jobs were announced on backchannel_done, and heard back.
    assert!(
        eventually(LONG, || async {
            let now = scrape(&bc).await;
            get(
                &now,
                "backchannel_notifications_received_total{channel=backchannel_done}",
            ) - get(
                &before,
                "backchannel_notifications_received_total{channel=backchannel_done}",
            ) == 2.0
        })
        .await
    );
    drop(sse);
    assert!(
        eventually(LONG, || async {
            get(&scrape(&bc).await, "backchannel_stream_connected{}") == 0.0
        })
        .await,
        "stream_connected drops when the stream closes"
    );
}

async fn listener_view(bc: &Instance) -> Value {
    let r = bc
        .send(bc.http.get(bc.url("/v1/listener")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

#[tokio::test]
async fn listener_view_follows_connect_takeover_and_disconnect() {
    let db = TestDb::new().await;
    let mut a_settings = settings(&db);
    a_settings.instance_id = Some("instance-a".into());
    let mut b_settings = settings(&db);
    b_settings.instance_id = Some("instance-b".into());
    let a = instance_with(a_settings).await;
    let b = instance_with(b_settings).await;

    assert_eq!(listener_view(&b).await["held"], false);
    let old = a.stream(Some("castellum")).await.expect("stream");
    for view in [listener_view(&a).await, listener_view(&b).await] {
        assert_eq!(view["held"], true);
        assert_eq!(view["listener_id"], "castellum");
        assert_eq!(view["instance"], "instance-a");
        assert!(view["since"].is_string());
    }
    let new = b.stream(Some("castellum")).await.expect("takeover");
    drop(old);
    let view = listener_view(&a).await;
    assert_eq!(view["held"], true);
    assert_eq!(view["instance"], "instance-b");
    drop(new);
    assert!(
        eventually(LONG, || async { listener_view(&a).await["held"] == false }).await,
        "disconnect is seen from the other instance"
    );
    let r = a
        .send(a.http.get(a.url("/v1/listener")).bearer_auth(LISTENER))
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn stats_count_jobs_by_state() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let first = bc.submit_job("s", json!(null)).await;
    bc.submit_job("s", json!(null)).await;
    let done = bc.submit_job("s", json!(null)).await;
    bc.answer(done, json!({"result": 0})).await;
    let r = bc
        .send(bc.http.get(bc.url("/v1/stats")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["jobs"],
        json!({"pending": 2, "delivered": 0, "done": 1, "failed": 0, "expired": 0, "cancelled": 0})
    );
    assert!(r.body["oldest_pending_age_seconds"].as_f64().unwrap() >= 0.0);
    bc.cancel(first).await;
    let r = bc
        .send(bc.http.get(bc.url("/v1/stats")).bearer_auth(SUBMITTER))
        .await;
    assert_eq!(r.body["jobs"]["cancelled"], 1);
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

/// A listener in the test: answers every job with `{"result": payload}`.
fn echo_listener(mut sse: Sse, bc: Instance) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(job) = sse.next_job(Duration::from_secs(60)).await {
            let id = job["id"].as_i64().unwrap();
            bc.answer(id, json!({"result": job["payload"]})).await;
        }
    })
}

#[tokio::test]
async fn submit_cli_prints_the_job_and_exits_by_state() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let sse = bc.stream(None).await.expect("stream");
    let listener = echo_listener(
        sse,
        Instance {
            running: None,
            base: bc.base.clone(),
            http: bc.http.clone(),
        },
    );
    let base = bc.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_backchannel"))
            .args([
                "submit",
                "--server",
                &base,
                "--token",
                SUBMITTER,
                "cli.echo",
                r#"{"hello": "cli"}"#,
                "--wait",
                "20",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job: Value = serde_json::from_slice(&output.stdout).expect("the job is printed as JSON");
    assert_eq!(job["state"], "done");
    assert_eq!(job["result"], json!({"hello": "cli"}));
    listener.abort();

    // No listener now: the job times out, the exit code is not 0 and says why.
    let base = bc.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_backchannel"))
            .args([
                "submit",
                "--server",
                &base,
                "--token",
                SUBMITTER,
                "cli.nobody",
                "--timeout",
                "0.3",
                "--wait",
                "10",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expired"), "{stderr}");
    let job: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(job["state"], "expired");
}

#[tokio::test]
async fn the_pool_and_the_dedicated_sessions_can_use_different_urls() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.database_url = format!("{}?application_name=bc_pooled", db.url);
    settings.direct_database_url = Some(format!("{}?application_name=bc_direct", db.url));
    let bc = instance_with(settings).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let id = bc.submit_job("split", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.unwrap()["id"], id);

    let observer = db.client().await;
    let app_of = |sql: &'static str| {
        let observer = &observer;
        async move {
            observer
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let lock_holder = app_of(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.locktype = 'advisory' AND l.granted AND l.objid = 1 AND l.objsubid = 2
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(
        lock_holder,
        vec!["bc_direct"],
        "the stream lock lives on the direct URL"
    );
    let listeners = app_of(
        "SELECT application_name FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'",
    )
    .await;
    assert_eq!(
        listeners,
        vec!["bc_direct"],
        "LISTEN lives on the direct URL"
    );
    let pooled = app_of(
        "SELECT application_name FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE '%INSERT INTO backchannel.jobs%'",
    )
    .await;
    assert!(
        !pooled.is_empty() && pooled.iter().all(|a| a == "bc_pooled"),
        "{pooled:?}"
    );

    // And a waiter on this split instance is still woken by an answer elsewhere.
    let other = instance(&db).await;
    let waiting = bc.get(id, Some(20.0));
    let answer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.answer(id, json!({"result": "split"})).await
    };
    let (r, a) = tokio::join!(waiting, answer);
    assert_eq!(a.status, 200);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["result"], "split");
}
