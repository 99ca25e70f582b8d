use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn submit_with_wait_returns_the_answer() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream");

    let waiting = spawn_submit(&bc.base, 20.0, json!({"kind": "ask", "payload": {"q": 1}}));
    let job = sse.next_job(LONG).await.expect("job arrives");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(bc.answer(id, json!({"result": {"a": 2}})).await.status, 200);

    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
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
    let base = bc.base.clone();
    let waiting = spawn_get(&base, id, 20.0);
    sse.next_job(LONG).await.expect("job");
    assert_eq!(bc.answer(id, json!({"error": "nope"})).await.status, 200);
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["state"], "failed");
}

#[tokio::test]
async fn cancel_wakes_a_waiter() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("ask", json!({})).await;
    let base = bc.base.clone();
    let waiting = spawn_get(&base, id, 20.0);
    assert!(bc.waiting_eventually(1, LONG).await);
    assert_eq!(bc.cancel(id).await.status, 200);
    let response = waiting.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["state"], "cancelled");
}

/// A repeated idempotency key answers the first job's true state: once its
/// deadline has passed it is `expired`, even if nothing looked at it before.
#[tokio::test]
async fn a_repeated_key_of_a_job_past_its_deadline_answers_expired() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let body = json!({"kind": "k", "timeout": 0.2, "idempotency_key": "once"});
    let first = bc.submit(body.clone(), None).await;
    assert_eq!(first.status, 202);
    let sql = db.client().await;
    assert!(
        eventually(LONG, || async {
            sql.query_one(
                "SELECT deadline <= now() FROM backchannel.jobs WHERE idempotency_key = 'once'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
        })
        .await
    );
    let again = bc.submit(body, None).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["state"], "expired");
}
