//! The agent holds the stream: it reconnects after the broker restarts,
//! waits on `409` and takes over, is sent a job in flight again without
//! forwarding it twice, leaves its jobs to a successor when killed, finishes
//! them on SIGTERM, and gives up a stream gone silent.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::support::agent::*;
use crate::support::*;

/// Long enough for a few reconnections (the broker asks for `retry: 2000`).
const RECONNECT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_agent_reconnects_after_the_broker_restarts() {
    let db = TestDb::new().await;
    let mut first = instance(&db).await;
    let addr = first.running().addr;
    let mut agent = RunningAgent::start(agent_args(&first.base, None));
    let r = first
        .submit(json!({"kind": "before", "payload": 1}), Some(30.0))
        .await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);

    first.stop().await;
    assert!(agent.until(LONG, |s| !s.connected).await, "the stream ends");

    let mut settings = settings(&db);
    settings.bind = addr;
    let second = instance_with(settings).await;
    let r = second
        .submit(json!({"kind": "after", "payload": 2}), Some(30.0))
        .await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert_eq!(r.body["result"], 2);
    assert!(agent.status.borrow().connections >= 2);
    assert!(agent.is_running());
}

#[tokio::test]
async fn a_second_agent_waits_on_409_then_takes_over() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut a = Handler::new("a").await;
    let mut b = Handler::new("b").await;
    let mut args = agent_args(&bc.base, Some(&a.url));
    args.listener_id = Some("agent-a".into());
    let mut agent_a = RunningAgent::start(args);
    assert!(agent_a.until(LONG, |s| s.connected).await);

    let mut args = agent_args(&bc.base, Some(&b.url));
    args.listener_id = Some("agent-b".into());
    let mut agent_b = RunningAgent::start(args);
    assert!(
        agent_b.until(RECONNECT, |s| s.busy >= 2).await,
        "the second agent is refused, and tries again"
    );
    assert!(agent_b.is_running(), "a busy channel is no reason to stop");
    assert!(!agent_b.status.borrow().connected);

    let r = bc
        .submit(json!({"kind": "k", "payload": "one"}), Some(30.0))
        .await;
    assert_eq!(r.body["result"]["by"], "a", "{:?}", r.body);

    agent_a.stop().await;
    let r = bc
        .submit(json!({"kind": "k", "payload": "two"}), Some(30.0))
        .await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert_eq!(r.body["result"]["by"], "b", "{:?}", r.body);
    assert!(a.next_call(SECOND).await.is_some());
    assert!(b.next_call(SECOND).await.is_some());
    assert_eq!(b.calls().len(), 1, "b saw only the job after the takeover");
}

#[tokio::test]
async fn a_job_in_flight_is_not_forwarded_again_when_redelivered() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut handler = Handler::holding("h").await;
    let mut args = agent_args(&bc.base, Some(&handler.url));
    args.listener_id = Some("agent-x".into());
    let mut agent = RunningAgent::start(args);
    let id = bc.submit_job("slow", json!("p")).await;
    handler.next_call(LONG).await.expect("forwarded once");

    // Take the agent's stream away (same listener id): the agent reconnects,
    // takes it back, and is sent the unanswered job again.
    let stolen = bc.stream(Some("agent-x")).await.expect("takeover");
    assert!(
        agent.until(RECONNECT, |s| s.repeats >= 1).await,
        "the job came again on the agent's new stream"
    );
    drop(stolen);
    handler.release();
    let r = bc.get(id, Some(30.0)).await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert_eq!(handler.calls().len(), 1, "forwarded once, not per delivery");
}

#[tokio::test]
async fn a_killed_agent_s_jobs_are_redelivered_to_its_successor() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut handler = Handler::holding("h").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(bc.submit_job("work", json!(i)).await);
    }
    // Both processes use the default listener id: the same on this host.
    let mut first = agent_process(&bc.base, &handler.url, &[]);
    for _ in 0..3 {
        handler
            .next_call(LONG)
            .await
            .expect("delivered and forwarded");
    }
    first.kill().await.expect("SIGKILL the agent");
    handler.release();

    let mut second = agent_process(&bc.base, &handler.url, &[]);
    for (i, id) in ids.iter().enumerate() {
        let r = bc.get(*id, Some(30.0)).await;
        assert_eq!(r.body["state"], "done", "{:?}", r.body);
        assert_eq!(r.body["result"]["handled"], json!(i));
        assert_eq!(
            r.body["result"]["attempt"], 2,
            "answered by the second stream"
        );
    }
    let mut per_job: HashMap<i64, Vec<i32>> = HashMap::new();
    for call in handler.calls() {
        per_job.entry(call.job_id).or_default().push(call.attempt);
    }
    for id in &ids {
        assert_eq!(per_job[id], vec![1, 2], "job {id}: once per stream");
    }
    second.kill().await.unwrap();
}

#[tokio::test]
async fn sigterm_closes_the_stream_and_finishes_the_job_in_flight() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.heartbeat = Duration::from_secs_f64(0.2);
    let bc = instance_with(settings).await;
    let mut handler = Handler::holding("h").await;
    let id = bc.submit_job("slow", json!("in flight")).await;
    let mut agent = agent_process(&bc.base, &handler.url, &["--shutdown-grace", "60"]);
    handler.next_call(LONG).await.expect("forwarded");

    terminate(&agent);
    // The agent lets the stream go at once: another listener gets it, and the
    // agent is still running, waiting for its job.
    let mut sse = bc
        .stream_eventually(Some("someone-else"), LONG)
        .await
        .expect("the agent closed its stream");
    assert!(
        agent.try_wait().unwrap().is_none(),
        "still finishing its job"
    );
    let later = bc.submit_job("later", json!(null)).await;
    loop {
        // The job in flight is open, so it comes on the new stream as well.
        let job = sse.next_job(LONG).await.expect("new jobs go elsewhere");
        if job["id"] == later {
            break;
        }
        assert_eq!(job["id"], id);
    }

    handler.release();
    let status = tokio::time::timeout(LONG, agent.wait())
        .await
        .expect("the agent exits after its job")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let r = bc.get(id, None).await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert_eq!(handler.calls().len(), 1);
}

#[tokio::test]
async fn a_silent_stream_is_abandoned_after_three_heartbeats() {
    init_tracing();
    let heartbeat = Duration::from_millis(300);
    let mut broker = SilentBroker::start(heartbeat / 3, heartbeat * 5).await;
    let mut args = agent_args(&broker.base, None);
    args.heartbeat = heartbeat.as_secs_f64();
    let _agent = RunningAgent::start(args);

    let (what, _) = broker.next(LONG).await;
    assert_eq!(what, "accepted");
    // Keepalives keep the first stream alive past three heartbeats...
    let (what, silent_at) = broker.next(LONG).await;
    assert_eq!(what, "silent", "abandoned while it still spoke");
    // ...then silence ends it, and a stream that never answers ends too.
    let (what, second) = broker.next(LONG).await;
    assert_eq!(what, "accepted");
    assert!(
        second - silent_at >= heartbeat * 2,
        "not before the silence"
    );
    let (what, third) = broker.next(LONG).await;
    assert_eq!(what, "accepted");
    assert!(third - second >= heartbeat * 2, "waited for an answer");
}

#[tokio::test]
async fn a_refused_token_is_logged_with_the_broker_s_explanation() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    // A submitter token where a listener token belongs.
    let env = [("BACKCHANNEL_LISTENER_TOKEN", SUBMITTER)];
    let agent = LoggedAgent::spawn(&["--server", &bc.base, "--echo"], &env);
    let refused = agent
        .until_logged(LONG, "the broker refused the listener token", 1)
        .await;
    assert_eq!(refused[0]["level"], "ERROR");
    assert_eq!(refused[0]["fields"]["status"], "403 Forbidden");
    assert_eq!(
        refused[0]["fields"]["explanation"],
        "a submitter token cannot use this endpoint; it needs a listener token"
    );
    assert!(!agent.text().contains(SUBMITTER), "never the token");
}

#[tokio::test]
async fn after_a_broker_restart_the_agent_comes_back_after_quick_tries() {
    let db = TestDb::new().await;
    let mut first = instance(&db).await;
    let addr = first.running().addr;
    let health = format!("127.0.0.1:{}", procs::free_port());
    let metrics_url = format!("http://{health}/metrics");
    let connects = || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        sample(&text, "backchannel_agent_stream_connects_total")
    };
    let env = [("BACKCHANNEL_LISTENER_TOKEN", LISTENER)];
    let agent = LoggedAgent::spawn(
        &["--server", &first.base, "--echo", "--health-bind", &health],
        &env,
    );
    assert!(eventually(LONG, || async { connects().await == Some(1.0) }).await);

    // The broker goes away: no one listens at its address for a while.
    first.stop().await;
    let refused = agent.until_logged(RECONNECT, "no broker there", 3).await;
    for line in &refused[..3] {
        assert_eq!(line["level"], "WARN");
        let delay = line["fields"]["retry_in_ms"].as_u64().expect("a delay");
        assert!(delay < 1000, "a quick try after connection refused: {line}");
    }

    let mut settings = settings(&db);
    settings.bind = addr;
    let second = instance_with(settings).await;
    assert!(
        eventually(RECONNECT, || async { connects().await == Some(2.0) }).await,
        "the agent is back"
    );
    let r = second
        .submit(json!({"kind": "after", "payload": 3}), Some(30.0))
        .await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    assert!(
        agent
            .logged("the broker refused the listener token")
            .is_empty()
    );
}
