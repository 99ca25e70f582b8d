//! Bad data: rows another application wrote straight into the table, past
//! the SQL API's checks. A job the broker cannot handle is that job's problem
//! only: it fails alone, and the stream goes on.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn poison_rows_fail_alone_and_the_stream_goes_on() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.max_body = 64 * 1024;
    let bc = instance_with(settings).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let sql = db.client().await;

    // Rows another application wrote straight into the table, past the
    // function's checks: each would break a listener, or the broker before.
    let poison = [
        ("deep", nested(200)),
        ("oversize", format!("\"{}\"", "x".repeat(100_000))),
        ("long integer", format!("[{}]", "9".repeat(5000))),
    ];
    let mut poisoned = Vec::new();
    for (kind, payload) in &poison {
        let id: i64 = sql
            .query_one(
                "INSERT INTO backchannel.jobs (kind, payload, deadline)
                 VALUES ($1::text, $2::text::jsonb, now() + interval '60 s') RETURNING id",
                &[&kind.replace(' ', "."), payload],
            )
            .await
            .unwrap()
            .get(0);
        poisoned.push(id);
    }
    // A deadline beyond what RFC 3339 writes is read as the year 9999.
    let far: i64 = sql
        .query_one(
            "INSERT INTO backchannel.jobs (kind, payload, deadline)
             VALUES ('far', '1', 'infinity') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    sql.batch_execute("NOTIFY backchannel_new").await.unwrap();

    let far_job = next_job_except(&mut sse, &poisoned).await;
    assert_eq!(far_job["id"], far);
    assert_eq!(far_job["deadline"], "9999-12-31T23:59:59.999999Z");
    assert_eq!(bc.answer(far, json!({"result": "far"})).await.status, 200);

    // A normal job submitted afterwards flows through the same, open stream.
    let waiting = bc.spawn_submit(json!({"kind": "normal", "payload": {"n": 1}}), 30.0);
    let job = next_job_except(&mut sse, &poisoned).await;
    assert_eq!(job["kind"], "normal");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(bc.answer(id, json!({"result": "ok"})).await.status, 200);
    let response = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);

    for id in poisoned {
        // Read as text: the deep payload is deeper than the test's own parser takes.
        let response = bc.get(id, Some(10.0)).await;
        assert_eq!(response.status(), 200, "job {id}");
        let text = response.text;
        assert!(text.contains(r#""state":"failed""#), "job {id}");
        assert!(
            text.contains(r#""error":{"code": "undeliverable""#),
            "job {id}"
        );
        assert!(text.contains("the payload cannot be sent"), "job {id}");
    }
    let r = bc.get(far, None).await;
    assert_eq!(r.body["state"], "done");
    let metrics = bc.metrics().await;
    assert!(
        metrics.contains("backchannel_jobs_undeliverable_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_deep_payload_reads_back_exactly() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let sql = db.client().await;
    let id: i64 = sql
        .query_one(
            "INSERT INTO backchannel.jobs (kind, payload, deadline)
             VALUES ('deep', $1::text::jsonb, now() + interval '60 s') RETURNING id",
            &[&nested(300)],
        )
        .await
        .unwrap()
        .get(0);
    let response = bc.get(id, None).await;
    assert_eq!(response.status(), 202);
    let text = response.text;
    assert!(text.contains(&nested(300)), "the payload as stored");
}
