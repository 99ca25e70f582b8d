//! What a payload, a result or an error may hold: any JSON number, exactly,
//! however large; no U+0000; nothing PostgreSQL would write out as megabytes.
//! The first two are what `make fuzz` (schemathesis against
//! docs/openapi.yaml) found, kept as regressions.

use serde_json::{Value, json};

use crate::support::*;

/// Numbers at the edges of f64 and of the integers survive jsonb: PostgreSQL
/// prints them back as long decimals, which must parse to the same values
/// (a near-f64::MAX payload once made reading the job panic, dropping the
/// connection, and the stream with it).
#[tokio::test]
async fn extreme_numbers_round_trip_through_the_database() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let numbers = json!([
        1.7976931348623157e308,
        1.7976931348623155e308,
        -1.7976931348623157e308,
        5e-324,
        2.2250738585072014e-308,
        0.1,
        -0.0,
        1e21,
        123456789.12345679,
        18446744073709551615u64,
        -9223372036854775808i64
    ]);
    let mut stream = bc.stream(None).await.expect("the stream opens");
    let submitted = bc
        .submit(json!({"kind": "numbers", "payload": numbers}), None)
        .await;
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    assert_same_numbers(&submitted.body["payload"], &numbers);
    let id = submitted.body["id"].as_i64().unwrap();

    let event = stream.next_job(LONG).await.expect("the job on the stream");
    assert_same_numbers(&event["payload"], &numbers);
    let answered = bc.answer(id, json!({"result": numbers})).await;
    assert_eq!(answered.status, 200, "{:?}", answered.body);
    assert_same_numbers(&answered.body["result"], &numbers);
    let replay = bc.answer(id, json!({"result": numbers})).await;
    assert_eq!(
        replay.status, 200,
        "a replay is the same answer: {:?}",
        replay.body
    );
    let read = bc.get(id, None).await;
    assert_eq!(read.status, 200);
    assert_same_numbers(&read.body["result"], &numbers);
}

/// Numbers travel exactly, but PostgreSQL writes them in its own notation
/// (`1e+21` comes back as `1000000000000000000000`): compare their values.
fn assert_same_numbers(got: &Value, want: &Value) {
    let (Some(got), Some(want)) = (got.as_array(), want.as_array()) else {
        panic!("arrays expected: {got} / {want}");
    };
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.as_f64(), w.as_f64(), "{g} != {w}");
    }
}

/// PostgreSQL stores no U+0000 in text or jsonb: such strings are a 400
/// naming the field (they were a 500), and nothing is stored.
#[tokio::test]
async fn nul_characters_are_a_400_not_a_500() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    for (body, field) in [
        (json!({"kind": "x", "payload": "a\u{0}b"}), "payload"),
        (json!({"kind": "x", "payload": {"k\u{0}": 1}}), "payload"),
        (
            json!({"kind": "x", "payload": [[{"deep": "\u{0}"}]]}),
            "payload",
        ),
        (
            json!({"kind": "x", "idempotency_key": "k\u{0}"}),
            "idempotency_key",
        ),
    ] {
        let r = bc.submit(body.clone(), None).await;
        assert_eq!((r.status, r.code()), (400, "invalid_field"), "{body}");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{message}");
    }
    assert_eq!(db.count_jobs().await, 0);
    let id = bc.submit_job("x", json!(null)).await;
    for (body, field) in [
        (json!({"result": {"a": "\u{0}"}}), "result"),
        (json!({"error": "\u{0}"}), "error"),
    ] {
        let r = bc.answer(id, body.clone()).await;
        assert_eq!((r.status, r.code()), (400, "invalid_field"), "{body}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field)
        );
    }
    assert_eq!(bc.get(id, None).await.body["state"], "pending");
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
