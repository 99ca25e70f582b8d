//! The contract end to end: submit, stream, answer, get; on one instance, and
//! across three that share one database.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn submit_stream_answer_get_done() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;

    let r = bc
        .submit(
            json!({"kind": "invitation.lookup", "payload": {"token": "abc"}}),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    let id = r.body["id"].as_i64().unwrap();
    assert!(id > 0);
    assert_eq!(r.headers["location"], format!("/v1/jobs/{id}").as_str());
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["attempts"], 0);
    assert!(r.body["completed_at"].is_null());

    let mut sse = bc.stream(None).await.expect("stream opens");
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let first = sse.next_event(LONG).await.expect("first block");
    assert!(
        first.retry.is_some(),
        "the stream opens with retry: {first:?}"
    );
    let event = sse.next_event(LONG).await.expect("job block");
    assert_eq!(event.event.as_deref(), Some("job"));
    assert_eq!(event.id.as_deref(), Some(id.to_string().as_str()));
    let job = event.job().unwrap();
    assert_eq!(job["id"], id);
    assert_eq!(job["kind"], "invitation.lookup");
    assert_eq!(job["payload"], json!({"token": "abc"}));
    assert_eq!(job["attempt"], 1);
    assert!(job["deadline"].as_str().unwrap().ends_with('Z'));

    let r = bc.answer(id, json!({"result": {"name": "Ada"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "done");

    let r = bc.get(id, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "done");
    assert_eq!(r.body["result"], json!({"name": "Ada"}));
    assert!(r.body["error"].is_null());
    assert_eq!(r.body["attempts"], 1);
    assert!(r.body["completed_at"].is_string());
}

#[tokio::test]
async fn error_answer_fails_the_job() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream opens");
    let id = bc.submit_job("x", json!(null)).await;
    let job = sse.next_job(LONG).await.expect("job arrives");
    assert_eq!(job["id"], id);
    assert_eq!(job["payload"], json!(null));

    let r = bc
        .answer(id, json!({"error": {"reason": "no such invitation"}}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "failed");
    let r = bc.get(id, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "failed");
    assert_eq!(r.body["error"], json!({"reason": "no such invitation"}));
    assert!(r.body["result"].is_null());
    assert!(r.body["completed_at"].is_string());
}

#[tokio::test]
async fn get_unknown_is_404_and_open_job_is_202() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let r = bc.get(999_999, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    let id = bc.submit_job("x", json!(1)).await;
    let r = bc.get(id, None).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["state"], "pending");
}

#[tokio::test]
async fn submit_on_one_stream_on_second_answer_on_third() {
    let db = TestDb::new().await;
    // No periodic safety re-check on the waiting side: only the notification
    // (and the read of the job it triggers) can wake the waiter.
    let submitter = instance_with(quiet_settings(&db)).await;
    let streamer = instance(&db).await;
    let answerer = instance(&db).await;
    let mut sse = streamer.stream(None).await.expect("stream");

    for round in 0..3 {
        let waiting = submitter.spawn_submit(json!({"kind": "cross", "payload": round}), 30.0);
        let job = sse
            .next_job(LONG)
            .await
            .expect("job crosses to the streaming instance");
        assert_eq!(job["payload"], round);
        let id = job["id"].as_i64().unwrap();
        let answered_at = Instant::now();
        assert_eq!(
            answerer.answer(id, json!({"result": round})).await.status,
            200
        );
        let response = waiting.await.unwrap();
        let woke_after = answered_at.elapsed();
        assert_eq!(response.status(), 200);
        let body = response.body;
        assert_eq!(body["state"], "done");
        assert_eq!(body["result"], round);
        // Woken by NOTIFY, not by the end of its 30 s wait (a loose bound, not a benchmark).
        assert!(
            woke_after < Duration::from_secs(5),
            "woke after {woke_after:?}"
        );
    }
}
