use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn backlog_in_id_order_then_redelivered_on_next_stream() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let ids: Vec<i64> =
        futures_util::future::join_all((0..5).map(|i| bc.submit_job("batch", json!(i)))).await;
    let mut sorted = ids.clone();
    sorted.sort();

    // An answered job and an expired job are never sent.
    let answered = bc.submit_job("answered", json!(null)).await;
    assert_eq!(bc.answer(answered, json!({"result": 1})).await.status, 200);
    let r = bc
        .submit(json!({"kind": "short", "timeout": 0.05}), None)
        .await;
    let expired = r.body["id"].as_i64().unwrap();
    let cancelled = bc.submit_job("cancelled", json!(null)).await;
    assert_eq!(bc.cancel(cancelled).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await; // let the short deadline pass

    let mut sse = bc.stream(None).await.expect("stream");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let job = sse.next_job(LONG).await.expect("backlog job");
        assert_eq!(job["attempt"], 1);
        seen.push(job["id"].as_i64().unwrap());
    }
    assert_eq!(seen, sorted, "backlog comes oldest first");
    // Nothing more: the answered, expired and cancelled jobs stay out.
    assert!(sse.next_job(Duration::from_millis(300)).await.is_none());
    drop(sse);

    // Answer one; the other four come again on the next stream with attempt 2.
    assert_eq!(
        bc.answer(sorted[0], json!({"result": "ok"})).await.status,
        200
    );
    let mut sse = bc
        .stream_eventually(None, LONG)
        .await
        .expect("channel frees after the first stream closes");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let job = sse.next_job(LONG).await.expect("redelivered job");
        assert_eq!(job["attempt"], 2, "{job}");
        seen.push(job["id"].as_i64().unwrap());
    }
    assert_eq!(seen, sorted[1..].to_vec());
    assert!(sse.next_job(Duration::from_millis(300)).await.is_none());
    let _ = (expired, answered);
}

#[tokio::test]
async fn new_jobs_flow_after_the_backlog_once_per_stream() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream");
    for i in 0..20 {
        let id = bc.submit_job("live", json!(i)).await;
        let job = sse.next_job(LONG).await.expect("live job");
        assert_eq!(job["id"], id);
        assert_eq!(job["payload"], json!(i));
    }
    // Each was sent once on this stream.
    assert!(sse.next_job(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn keepalive_comments_on_an_idle_stream() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.heartbeat = Duration::from_secs_f64(0.2);
    let bc = instance_with(settings).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let mut keepalives = 0;
    while keepalives < 3 {
        let event = sse.next_event(LONG).await.expect("stream stays open");
        if event.comments.iter().any(|c| c == "keepalive") {
            keepalives += 1;
        }
    }
}

#[tokio::test]
async fn second_stream_is_refused_until_the_first_closes() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let other = instance(&db).await;
    let first = bc.stream(None).await.expect("first stream");
    for target in [&bc, &other] {
        let r = target
            .stream(None)
            .await
            .err()
            .expect("second stream refused");
        assert_eq!(r.status, 409);
        assert_eq!(r.code(), "listener_busy");
        assert!(r.headers.contains_key("retry-after"));
    }
    // A different listener id does not take over either.
    let r = other
        .stream(Some("someone-else"))
        .await
        .err()
        .expect("refused");
    assert_eq!(r.status, 409);

    drop(first);
    let mut sse = other
        .stream_eventually(None, Duration::from_secs(5))
        .await
        .expect("the channel is free again after the holder closes");
    // The new holder receives jobs submitted on either instance.
    let id = bc.submit_job("after", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.expect("job")["id"], id);
}

#[tokio::test]
async fn thirty_concurrent_streams_over_three_instances_exactly_one_wins() {
    let db = TestDb::new().await;
    let instances = [
        instance(&db).await,
        instance(&db).await,
        instance(&db).await,
    ];
    let attempts = (0..30).map(|i| instances[i % 3].stream(None));
    let results = futures_util::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one stream may be open");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.status, 409);
        assert_eq!(r.code(), "listener_busy");
    }
}

#[tokio::test]
async fn takeover_by_the_same_listener_id_from_another_instance() {
    let db = TestDb::new().await;
    let a = instance(&db).await;
    let b = instance(&db).await;
    let mut old = a.stream(Some("castellum-1")).await.expect("first stream");
    let r = b
        .stream(Some("castellum-2"))
        .await
        .err()
        .expect("other id refused");
    assert_eq!(r.status, 409);
    let mut new = b
        .stream(Some("castellum-1"))
        .await
        .expect("same id takes over");
    assert!(old.ended(LONG).await, "the old stream is closed");
    let id = a.submit_job("after.takeover", json!(null)).await;
    assert_eq!(
        new.next_job(LONG).await.expect("job on new stream")["id"],
        id
    );
}

/// How many claim statements this instance's streams have run.
async fn claims(bc: &Instance) -> f64 {
    sample(
        &bc.metrics().await,
        "backchannel_batch_jobs_count{kind=\"claim\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_job_submitted_where_the_stream_is_held_is_claimed_by_its_insert() {
    let db = TestDb::new().await;
    let here = instance_with(settings_without_forwarding(&db)).await;
    let there = instance_with(settings_without_forwarding(&db)).await;
    let mut sse = here.stream(None).await.expect("stream");
    // The first claim (the backlog) runs at once; then no claim runs until
    // the heartbeat, unless a wake asks for one.
    assert!(eventually(LONG, || async { claims(&here).await >= 1.0 }).await);
    let before = claims(&here).await;
    for i in 0..10 {
        let r = here
            .submit(json!({"kind": "here", "payload": i}), None)
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        // Stored already delivered on this stream, by the insert itself.
        assert_eq!(r.body["state"], "delivered", "{}", r.text);
        assert_eq!(r.body["attempts"], 1, "{}", r.text);
        let job = sse.next_job(LONG).await.expect("the job, handed over");
        assert_eq!(job["id"], r.body["id"]);
        assert_eq!(job["attempt"], 1);
        assert_eq!(job["payload"], json!(i));
    }
    assert_eq!(
        claims(&here).await,
        before,
        "jobs submitted here reach the stream without a claim statement"
    );
    // A job submitted on an instance without the stream is stored pending,
    // and claimed by the stream when its NOTIFY arrives.
    let r = there.submit(json!({"kind": "there"}), None).await;
    assert_eq!(r.body["state"], "pending", "{}", r.text);
    let job = sse.next_job(LONG).await.expect("the job, claimed");
    assert_eq!(job["id"], r.body["id"]);
    assert_eq!(job["attempt"], 1);
    assert!(claims(&here).await > before);
    assert!(sse.next_job(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn a_job_claimed_by_its_insert_for_a_stream_that_ends_comes_again_on_the_next() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let sse = bc.stream(None).await.expect("stream");
    let r = bc.submit(json!({"kind": "k", "payload": 7}), None).await;
    assert_eq!(r.body["state"], "delivered", "{}", r.text);
    // The listener goes away before reading it.
    drop(sse);
    let mut sse = bc
        .stream_eventually(None, LONG)
        .await
        .expect("stream again");
    let job = sse.next_job(LONG).await.expect("the job, again");
    assert_eq!(job["id"], r.body["id"]);
    assert_eq!(job["attempt"], 2, "{job}");
}
