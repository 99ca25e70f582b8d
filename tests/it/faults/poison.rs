//! Bad data: rows another application wrote through SQL, and request bodies
//! that PostgreSQL would blow up. A job the broker cannot handle is that job's
//! problem only; nothing stored or sent is larger than the body limit.

use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

use crate::support::*;

/// Arrays nested `depth` deep around a 1.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// The stream's next job event that is not one of `skip`; panics if none comes.
async fn next_job_except(sse: &mut Sse, skip: &[i64]) -> Value {
    loop {
        let job = sse.next_job(LONG).await.expect("the stream goes on");
        if !skip.contains(&job["id"].as_i64().unwrap()) {
            return job;
        }
    }
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
    let waiting = spawn_submit(
        &bc.base,
        30.0,
        json!({"kind": "normal", "payload": {"n": 1}}),
    );
    let job = next_job_except(&mut sse, &poisoned).await;
    assert_eq!(job["kind"], "normal");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(bc.answer(id, json!({"result": "ok"})).await.status, 200);
    let response = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);

    for id in poisoned {
        // Read as text: the deep payload is deeper than the test's own parser takes.
        let response = bc
            .http
            .get(bc.url(&format!("/v1/jobs/{id}?wait=10")))
            .bearer_auth(SUBMITTER)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "job {id}");
        let text = response.text().await.unwrap();
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
    let response = bc
        .http
        .get(bc.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(SUBMITTER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let text = response.text().await.unwrap();
    assert!(text.contains(&nested(300)), "the payload as stored");
}

#[tokio::test]
async fn amplified_numbers_are_refused_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let post = |body: String| {
        bc.send(
            bc.http
                .post(bc.url("/v1/jobs"))
                .bearer_auth(SUBMITTER)
                .header("content-type", "application/json")
                .body(body),
        )
    };
    // ~700 bytes that PostgreSQL would write out as megabytes of digits.
    let numbers = vec!["12345e100000"; 50].join(",");
    let r = post(format!(r#"{{"kind":"k","payload":[{numbers}]}}"#)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_field"), "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("payload")
    );
    // Small numbers written out long, many of them: over the body limit.
    let numbers = vec!["1e-16000"; 80].join(",");
    let r = post(format!(r#"{{"kind":"k","payload":[{numbers}]}}"#)).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "{:?}",
        r.body
    );
    // Beyond what PostgreSQL's numeric holds: a 400, not a 500.
    let r = post(r#"{"kind":"k","payload":1e200000}"#.into()).await;
    assert_eq!((r.status, r.code()), (400, "invalid_field"), "{:?}", r.body);
    assert_eq!(db.count_jobs().await, 0, "nothing was stored");

    // Answers are held to the same rules; the job stays open.
    let id = bc.submit_job("k", json!(null)).await;
    let answer = format!(r#"{{"result":[{}]}}"#, vec!["1e-16000"; 80].join(","));
    let r = bc
        .send(
            bc.http
                .post(bc.url(&format!("/v1/jobs/{id}/result")))
                .bearer_auth(LISTENER)
                .header("content-type", "application/json")
                .body(answer),
        )
        .await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(bc.get(id, None).await.body["state"], "pending");

    // Within the limits, numbers travel exactly, and the next job flows.
    let mut sse = bc.stream(None).await.expect("stream");
    let r =
        post(r#"{"kind":"k","payload":[1e300, 0.1e-300, 12345678901234567890123]}"#.into()).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let job = next_job_except(&mut sse, &[id]).await;
    let data = serde_json::to_string(&job["payload"]).unwrap();
    assert!(data.contains(&format!("1{}", "0".repeat(300))), "{data}");
    assert!(data.contains("12345678901234567890123"), "{data}");
    let r = bc
        .answer(job["id"].as_i64().unwrap(), json!({"result": 1}))
        .await;
    assert_eq!(r.status, 200);
}
