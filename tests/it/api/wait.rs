//! `?wait=` on `POST /v1/jobs` and `GET /v1/jobs/{id}`: the job as it ends
//! within the wait, `202` when the wait runs out, woken by an answer or a
//! cancel.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn submit_with_wait_returns_the_answer() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream");

    let waiting = bc.spawn_submit(json!({"kind": "ask", "payload": {"q": 1}}), 20.0);
    let job = sse.next_job(LONG).await.expect("job arrives");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(bc.answer(id, json!({"result": {"a": 2}})).await.status, 200);

    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.body;
    assert_eq!(body["id"], id);
    assert_eq!(body["state"], "done");
    assert_eq!(body["result"], json!({"a": 2}));
}

#[tokio::test]
async fn wait_that_runs_out_is_202() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let r = bc
        .submit(json!({"kind": "slow", "timeout": 30}), Some(0.3))
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["state"], "pending");
    let id = r.body["id"].as_i64().unwrap();
    let r = bc.get(id, Some(0.2)).await;
    assert_eq!(r.status, 202);
}

#[tokio::test]
async fn deadline_passing_while_waiting_gives_expired() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let r = bc
        .submit(json!({"kind": "slow", "timeout": 0.5}), Some(20.0))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["state"], "expired");
    assert!(r.body["completed_at"].is_string());
    // GET agrees, and the stream never sends it.
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(bc.get(id, None).await.body["state"], "expired");
}

#[tokio::test]
async fn get_with_wait_wakes_on_answer() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("ask", json!({})).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let waiting = bc.spawn_get(id, 20.0);
    sse.next_job(LONG).await.expect("job");
    assert_eq!(bc.answer(id, json!({"error": "nope"})).await.status, 200);
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.body;
    assert_eq!(body["state"], "failed");
}

#[tokio::test]
async fn cancel_wakes_a_waiter() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("ask", json!({})).await;
    let waiting = bc.spawn_get(id, 20.0);
    assert!(bc.waiting_eventually(1, LONG).await);
    assert_eq!(bc.cancel(id).await.status, 200);
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.body;
    assert_eq!(body["state"], "cancelled");
}
