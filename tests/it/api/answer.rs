//! `POST /v1/jobs/{id}/result`: the first answer ends the job, the same one
//! again is a replay, a different one a conflict; answers (and cancels) to
//! jobs that ended otherwise or never were.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn answers_are_idempotent_and_final() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("x", json!(null)).await;

    let first = bc.answer(id, json!({"result": {"n": 1}})).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["state"], "done");
    // The same answer again: 200, unchanged.
    let replay = bc.answer(id, json!({"result": {"n": 1}})).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body);
    // A different answer: 409 with the job.
    let other = bc.answer(id, json!({"result": {"n": 2}})).await;
    assert_eq!(other.status, 409);
    assert_eq!(other.code(), "already_answered");
    assert_eq!(other.body["error"]["job"]["result"], json!({"n": 1}));
    let other = bc.answer(id, json!({"error": {"n": 1}})).await;
    assert_eq!(other.status, 409);
    assert_eq!(bc.get(id, None).await.body["result"], json!({"n": 1}));

    // An error answer replays the same way.
    let id = bc.submit_job("x", json!(null)).await;
    assert_eq!(bc.answer(id, json!({"error": "boom"})).await.status, 200);
    assert_eq!(bc.answer(id, json!({"error": "boom"})).await.status, 200);
    assert_eq!(bc.answer(id, json!({"result": "boom"})).await.status, 409);
}

#[tokio::test]
async fn answers_to_cancelled_expired_and_unknown_jobs() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;

    let id = bc.submit_job("x", json!(null)).await;
    let r = bc.cancel(id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "cancelled");
    let r = bc.answer(id, json!({"result": 1})).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.code(), "gone");
    assert_eq!(r.body["error"]["job"]["state"], "cancelled");
    // Cancelling again: 409 already_terminal with the job.
    let r = bc.cancel(id).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "already_terminal");
    assert_eq!(r.body["error"]["job"]["id"], id);

    let r = bc.submit(json!({"kind": "x", "timeout": 0.05}), None).await;
    let expired = r.body["id"].as_i64().unwrap();
    assert!(
        eventually(LONG, || async {
            bc.get(expired, None).await.body["state"] == "expired"
        })
        .await,
        "the job expires"
    );
    let r = bc.answer(expired, json!({"result": 1})).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.code(), "gone");
    let r = bc.cancel(expired).await;
    assert_eq!(r.status, 409);

    assert_eq!(bc.answer(987_654, json!({"result": 1})).await.status, 404);
    assert_eq!(bc.cancel(987_654).await.status, 404);

    // A done job cannot be cancelled.
    let id = bc.submit_job("x", json!(null)).await;
    assert_eq!(bc.answer(id, json!({"result": 1})).await.status, 200);
    let r = bc.cancel(id).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "already_terminal");
    assert_eq!(r.body["error"]["job"]["state"], "done");
}

#[tokio::test]
async fn an_answer_past_the_deadline_is_gone() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let r = bc.submit(json!({"kind": "x", "timeout": 0.3}), None).await;
    let id = r.body["id"].as_i64().unwrap();
    sse.next_job(LONG).await.expect("job");
    // No reaper ran and nobody read it: the answer itself finds it past its deadline.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = bc.answer(id, json!({"result": 1})).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.body["error"]["job"]["state"], "expired");
}

#[tokio::test]
async fn a_replay_is_the_same_answer_by_value_not_by_spelling() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let id = bc.submit_job("x", json!(null)).await;
    let send = |body: &'static str| {
        bc.http
            .post(bc.url(&format!("/v1/jobs/{id}/result")))
            .bearer_auth(LISTENER)
            .header("content-type", "application/json")
            .body(body)
    };
    assert_eq!(
        bc.send(send(r#"{"result": {"n": 100, "m": [1, 2]}}"#))
            .await
            .status,
        200
    );
    // Same values, other spelling and key order: a replay.
    assert_eq!(
        bc.send(send(r#"{"result": {"m": [1.0, 2], "n": 1e2}}"#))
            .await
            .status,
        200
    );
    // A different value: a conflict.
    assert_eq!(
        bc.send(send(r#"{"result": {"n": 101, "m": [1, 2]}}"#))
            .await
            .status,
        409
    );
}
