//! The broker's `/metrics`: counters that move by exactly what happened, and
//! the age of the oldest pending job as a gauge.

use std::collections::HashMap;

use serde_json::json;

use crate::support::*;

/// Every sample of the exposition, keyed by name and sorted labels.
async fn scrape(bc: &Instance) -> HashMap<String, f64> {
    let response = bc.send(bc.http.get(bc.url("/metrics"))).await;
    assert_eq!(response.status(), 200);
    let text = response.text;
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
    assert_eq!(
        before.get("backchannel_db_statements_unnamed{}"),
        Some(&0.0),
        "prepared statements, straight to PostgreSQL"
    );
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
