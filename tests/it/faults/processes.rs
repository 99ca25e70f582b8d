//! Broker processes killed (SIGKILL) or stopped (SIGTERM) while they hold the
//! stream or a waiting request; a takeover across processes.

use std::time::Duration;

use serde_json::json;

use crate::support::procs::BrokerProcess;
use crate::support::*;

#[tokio::test]
async fn sigkill_on_the_stream_holder_frees_the_channel() {
    let db = TestDb::new().await;
    let holder = BrokerProcess::spawn(&db.url, &[]).await;
    let other = instance(&db).await;
    let mut sse = holder
        .client()
        .stream(None)
        .await
        .expect("stream on the child");
    assert_eq!(other.stream(None).await.err().unwrap().status, 409);
    holder.signal("KILL");
    assert!(sse.ended(LONG).await);
    let mut sse = other
        .stream_eventually(None, LONG)
        .await
        .expect("another instance accepts a stream within seconds");
    let id = other.submit_job("after.kill", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.unwrap()["id"], id);
}

#[tokio::test]
async fn sigkill_on_a_waiting_submitter_leaves_nothing_behind() {
    let db = TestDb::new().await;
    let submitter = BrokerProcess::spawn(&db.url, &[]).await;
    let mut settings = settings(&db);
    settings.retention = Duration::from_secs_f64(1.0);
    settings.reaper_interval = Duration::from_secs_f64(0.2);
    let survivor = instance_with(settings).await;

    let base = submitter.base.clone();
    let waiting = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{base}/v1/jobs?wait=60"))
            .bearer_auth(SUBMITTER)
            .json(&json!({"kind": "zombie", "timeout": 1}))
            .send()
            .await
    });
    assert!(eventually(LONG, || async { db.count_jobs().await == 1 }).await);
    submitter.signal("KILL");
    assert!(
        waiting.await.unwrap().is_err(),
        "the killed instance's request dies with it"
    );

    let client = db.client().await;
    let state = || async {
        client
            .query_opt("SELECT state FROM backchannel.jobs", &[])
            .await
            .unwrap()
            .map(|row| row.get::<_, String>(0))
    };
    assert!(
        eventually(LONG, || async {
            state().await.as_deref() == Some("expired")
        })
        .await,
        "the reaper on the surviving instance expires the job after its deadline"
    );
    assert!(
        eventually(LONG, || async { state().await.is_none() }).await,
        "and deletes it after the retention"
    );
    drop(survivor);
}

#[tokio::test]
async fn sigterm_on_the_stream_holder_hands_over_at_once() {
    let db = TestDb::new().await;
    let mut holder = BrokerProcess::spawn(&db.url, &[]).await;
    let other = instance(&db).await;
    let client = holder.client();
    let mut sse = client.stream(None).await.expect("stream on the child");
    let id = client.submit_job("term", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.unwrap()["id"], id);
    let waiting = client.spawn_get(id, 60.0);
    // The waiter is registered once the child has read the row: wait for it to
    // be in flight (the child answers nothing until SIGTERM).
    tokio::time::sleep(Duration::from_millis(300)).await;

    holder.signal("TERM");
    assert!(sse.ended(LONG).await, "the stream ends on SIGTERM");
    let response = tokio::time::timeout(LONG, waiting)
        .await
        .expect("waiter answered")
        .unwrap();
    assert_eq!(
        response.status(),
        202,
        "a waiting request gets the job's current state"
    );
    let body = response.body;
    assert_eq!(body["state"], "delivered");
    let mut sse = other
        .stream_eventually(None, Duration::from_secs(2))
        .await
        .expect("another instance takes the stream at once");
    assert!(
        holder.exited(LONG).await,
        "the process exits within its grace period"
    );
    assert_eq!(sse.next_job(LONG).await.unwrap()["id"], id, "redelivered");
}

#[tokio::test]
async fn takeover_across_processes() {
    let db = TestDb::new().await;
    let a = BrokerProcess::spawn(&db.url, &[]).await;
    let b = BrokerProcess::spawn(&db.url, &[]).await;
    let mut old = a.client().stream(Some("castellum")).await.expect("stream");
    assert_eq!(
        b.client()
            .stream(Some("intruder"))
            .await
            .err()
            .unwrap()
            .status,
        409
    );
    assert_eq!(b.client().stream(None).await.err().unwrap().status, 409);
    let mut new = b
        .client()
        .stream(Some("castellum"))
        .await
        .expect("takeover");
    assert!(old.ended(LONG).await);
    let id = a.client().submit_job("t", json!(null)).await;
    assert_eq!(new.next_job(LONG).await.unwrap()["id"], id);
}
