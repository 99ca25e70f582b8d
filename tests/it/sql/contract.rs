//! The SQL contract: apps sharing the database may skip HTTP. What HTTP
//! refuses, `backchannel.submit` refuses at the door.

use futures_util::StreamExt;
use serde_json::json;
use tokio_postgres::error::SqlState;
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
        .send(
            bc.http
                .post(bc.url("/v1/jobs"))
                .bearer_auth(SUBMITTER)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
    assert_eq!(response.status(), 202);
    let text = response.text;
    assert!(text.contains("123456789012345678901234567890"), "{text}");
    let event = sse.next_event(LONG).await.expect("job");
    assert!(
        event
            .data
            .unwrap()
            .contains("123456789012345678901234567890")
    );
}

#[tokio::test]
async fn the_sql_api_refuses_at_the_door_what_http_refuses() {
    let db = TestDb::new().await;
    let _bc = instance(&db).await;
    let sql = db.client().await;
    let big_string = format!("\"{}\"", "x".repeat(1_100_000));
    let cases: [(&str, String, &str, SqlState); 5] = [
        (
            "deep nesting",
            nested(200),
            "60 s",
            SqlState::PROGRAM_LIMIT_EXCEEDED,
        ),
        (
            "a far deadline",
            "1".into(),
            "270000 years",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "a timeout past the maximum",
            "1".into(),
            "2 hours",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
        (
            "an oversize payload",
            big_string,
            "60 s",
            SqlState::PROGRAM_LIMIT_EXCEEDED,
        ),
        (
            "a 5001-digit number",
            "[1e5000]".into(),
            "60 s",
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
        ),
    ];
    for (what, payload, timeout, code) in cases {
        let error = sql
            .query_one(
                "SELECT backchannel.submit('poison', $1::text::jsonb, $2::text::interval)",
                &[&payload, &timeout],
            )
            .await
            .expect_err(what);
        assert_eq!(error.code(), Some(&code), "{what}: {error:?}");
    }
    // Just within every limit: accepted.
    sql.query_one(
        "SELECT backchannel.submit('fine', $1::text::jsonb, interval '1 hour')",
        &[&nested(127)],
    )
    .await
    .expect("127 deep is fine");
    assert_eq!(db.count_jobs().await, 1);
}
