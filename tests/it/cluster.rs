//! Several instances on one database.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

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
        let waiting = spawn_submit(
            &submitter.base,
            30.0,
            json!({"kind": "cross", "payload": round}),
        );
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
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["state"], "done");
        assert_eq!(body["result"], round);
        // Woken by NOTIFY, not by the end of its 30 s wait (a loose bound, not a benchmark).
        assert!(
            woke_after < Duration::from_secs(5),
            "woke after {woke_after:?}"
        );
    }
}
