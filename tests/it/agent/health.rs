//! The agent's health listener (`--health-bind`): `/healthz`, `/readyz` that
//! follows the stream, and `/metrics` that counts jobs and connections.

use std::time::Duration;

use serde_json::json;

use crate::support::agent::*;
use crate::support::*;

async fn get(http: &reqwest::Client, url: String) -> (u16, String) {
    let response = http.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
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
