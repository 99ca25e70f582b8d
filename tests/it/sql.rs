//! The SQL contract: apps sharing the database may skip HTTP.

use futures_util::StreamExt;
use serde_json::json;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::*;

#[tokio::test]
async fn sql_submit_reaches_the_stream_and_done_is_notified() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream");

    // A plain connection listening on backchannel_done.
    let (listener, mut conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener
        .batch_execute("LISTEN backchannel_done")
        .await
        .unwrap();

    let sql = db.client().await;
    let id: i64 = sql
        .query_one(
            "SELECT backchannel.submit('sql.kind', '{\"from\": \"sql\"}'::jsonb, interval '30 seconds', NULL)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let job = sse
        .next_job(LONG)
        .await
        .expect("SQL-submitted job reaches the stream");
    assert_eq!(job["id"], id);
    assert_eq!(job["kind"], "sql.kind");
    assert_eq!(job["payload"], json!({"from": "sql"}));

    assert_eq!(bc.answer(id, json!({"result": true})).await.status, 200);
    let (channel, payload) = tokio::time::timeout(LONG, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(channel, "backchannel_done");
    assert_eq!(payload, id.to_string());

    // An idempotency key through SQL returns the same id and creates nothing.
    let again = |key: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one(
                "SELECT backchannel.submit('k', 'null'::jsonb, interval '5 seconds', $1)",
                &[&key],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(again("same").await, again("same").await);

    // Cancel and expiry notify too.
    let id = bc.submit_job("c", json!(null)).await;
    sse.next_job(LONG).await.expect("job");
    assert_eq!(bc.cancel(id).await.status, 200);
    let (_, payload) = tokio::time::timeout(LONG, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload, id.to_string());
}

#[tokio::test]
async fn sql_submit_rejects_bad_input() {
    let db = TestDb::new().await;
    let _bc = instance(&db).await;
    let sql = db.client().await;
    assert!(
        sql.query_one(
            "SELECT backchannel.submit('bad kind', 'null', interval '5 s', NULL)",
            &[]
        )
        .await
        .is_err()
    );
    assert!(
        sql.query_one(
            "SELECT backchannel.submit('k', 'null', interval '0 s', NULL)",
            &[]
        )
        .await
        .is_err()
    );
    assert_eq!(db.count_jobs().await, 0);
}

#[tokio::test]
async fn numbers_travel_exactly_whatever_their_size() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut sse = bc.stream(None).await.expect("stream");

    // Through SQL, a number no 64-bit float can hold: read back, streamed, answered.
    let sql = db.client().await;
    let id: i64 = sql
        .query_one(
            "SELECT backchannel.submit('big', '{\"a\": 1e400}'::jsonb, interval '30 seconds', NULL)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let event = sse.next_event(LONG).await.expect("retry block");
    assert!(event.retry.is_some());
    let event = sse
        .next_event(LONG)
        .await
        .expect("the job is streamed, not the stream ended");
    let data = event.data.expect("data");
    assert!(data.contains(&format!("1{}", "0".repeat(400))), "{data}");
    let r = bc.get(id, None).await;
    assert_eq!(r.status, 202);

    // Through HTTP, an integer beyond 64 bits and a long decimal stay as sent.
    let body = r#"{"kind": "big", "payload": [123456789012345678901234567890, 0.1000000000000000055511151231257827]}"#;
    let response = bc
        .http
        .post(bc.url("/v1/jobs"))
        .bearer_auth(SUBMITTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let text = response.text().await.unwrap();
    assert!(text.contains("123456789012345678901234567890"), "{text}");
    let event = sse.next_event(LONG).await.expect("job");
    assert!(
        event
            .data
            .unwrap()
            .contains("123456789012345678901234567890")
    );
}

/// Claiming changes state, attempts and stream_id, none of them in an index:
/// PostgreSQL can update the row heap-only, without an entry in any index
/// (the stream claims every job once; an index on `state` would undo this).
#[tokio::test]
async fn claiming_a_job_is_a_heap_only_update() {
    let db = TestDb::new().await;
    let _bc = instance(&db).await;
    let mut sql = db.client().await;
    let tx = sql.transaction().await.unwrap();
    tx.query_one(
        "SELECT backchannel.submit('t.hot', '{}', interval '1 minute')",
        &[],
    )
    .await
    .unwrap();
    let claimed = tx
        .query(
            backchannel::store::sql::stream::CLAIM_JOBS,
            &[&7_i64, &32_i64],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let row = tx
        .query_one(
            "SELECT pg_stat_get_xact_tuples_updated('backchannel.jobs'::regclass),
                    pg_stat_get_xact_tuples_hot_updated('backchannel.jobs'::regclass)",
            &[],
        )
        .await
        .unwrap();
    let (updated, heap_only): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((updated, heap_only), (1, 1), "the claim was not heap-only");
}
