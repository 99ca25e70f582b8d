//! Group commit keeps the contract: requests that share a batch each get
//! their own outcome. A batch is held in flight by what it cannot skip (a
//! table lock, a key another session inserted without its advisory lock),
//! while the next one gathers behind it.

use serde_json::{Value, json};

use crate::support::*;

/// The value of one sample of the instance's `/metrics`.
async fn metric(bc: &Instance, series: &str) -> f64 {
    sample(&bc.metrics().await, series).unwrap_or_else(|| panic!("{series} not in /metrics"))
}

/// Wait until `n` requests of `kind` wait for the next batch.
async fn queued(bc: &Instance, kind: &str, n: f64) {
    let sample = format!("backchannel_batch_queued{{kind=\"{kind}\"}}");
    assert!(
        eventually(LONG, || async { metric(bc, &sample).await == n }).await,
        "{n} {kind} requests gather for the next batch"
    );
}

/// Another session inserts a job with `key` and does not commit yet: a broker
/// insert of the same key waits for it.
async fn hold_key(db: &TestDb, key: &str) -> tokio_postgres::Client {
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO backchannel.jobs (kind, payload, deadline, idempotency_key)
             VALUES ('held', 'null', now() + interval '60 s', '{key}')"
        ))
        .await
        .unwrap();
    client
}

async fn body(response: Pending) -> (u16, Value) {
    let response = tokio::time::timeout(LONG, response).await.unwrap().unwrap();
    (response.status, response.body)
}

#[tokio::test]
async fn a_batch_with_a_key_twice_and_a_key_that_exists() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let existing = bc
        .submit(json!({"kind": "k", "idempotency_key": "existing"}), None)
        .await;
    let existing_id = existing.body["id"].as_i64().unwrap();

    let held = hold_key(&db, "blocker").await;
    let first = bc.spawn_submit(json!({"kind": "k", "idempotency_key": "blocker"}), 0.0);
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let batch = [
        json!({"kind": "k", "idempotency_key": "twice", "payload": 1}),
        json!({"kind": "k", "idempotency_key": "twice", "payload": 2}),
        json!({"kind": "k", "idempotency_key": "existing"}),
        json!({"kind": "k", "payload": "no key"}),
    ];
    let sent: Vec<_> = batch
        .iter()
        .map(|b| bc.spawn_submit(b.clone(), 0.0))
        .collect();
    queued(&bc, "insert", 4.0).await;
    held.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(body(first).await.0, 202);
    let mut outcomes = Vec::new();
    for response in sent {
        outcomes.push(body(response).await);
    }
    let (a, b, e, fresh) = (&outcomes[0], &outcomes[1], &outcomes[2], &outcomes[3]);
    assert_eq!((a.0, b.0), (202, 202));
    assert_eq!(a.1["id"], b.1["id"], "one job for the key, both get it");
    assert_eq!(e.1["id"], existing_id, "an existing key answers its job");
    assert_eq!(fresh.0, 202);
    assert_ne!(fresh.1["id"], a.1["id"]);
    let sql = db.client().await;
    let twice: i64 = sql
        .query_one(
            "SELECT count(*) FROM backchannel.jobs WHERE idempotency_key = 'twice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(twice, 1);
    // Three insert transactions: the existing key, the blocked one, and the four together.
    let inserts = r#"{kind="insert"}"#;
    assert_eq!(
        metric(&bc, &format!("backchannel_batch_jobs_count{inserts}")).await,
        3.0
    );
    assert_eq!(
        metric(&bc, &format!("backchannel_batch_jobs_sum{inserts}")).await,
        6.0
    );
}

#[tokio::test]
async fn a_batch_of_answers_keeps_each_outcome() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let blocker = bc.submit_job("blocker", json!(0)).await;
    let open = bc.submit_job("open", json!(1)).await;
    let expired = bc
        .submit(json!({"kind": "short", "timeout": 0.2}), None)
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let sql = db.client().await;
    assert!(
        eventually(LONG, || async {
            sql.query_one(
                "SELECT deadline <= now() FROM backchannel.jobs WHERE id = $1",
                &[&expired],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
        })
        .await
    );

    // The whole table, not the row: a batch skips a row another session
    // holds (faults::isolation), never a table lock.
    let lock = db.lock_table().await;
    let answer = |id: i64, body: Value| bc.spawn(bc.answer_request(id, &body));
    let first = answer(blocker, json!({"result": "first"}));
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let one = answer(open, json!({"result": "one"}));
    let other = answer(open, json!({"result": "other"}));
    let late = answer(expired, json!({"result": "late"}));
    queued(&bc, "finish", 3.0).await;
    lock.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(body(first).await.0, 200);
    let outcomes = [body(one).await, body(other).await];
    let won: Vec<_> = outcomes.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one answer ends the job: {outcomes:?}"
    );
    let ended = &won[0].1;
    let (status, lost) = outcomes.iter().find(|(s, _)| *s != 200).unwrap();
    assert_eq!(*status, 409, "{lost}");
    assert_eq!(lost["error"]["code"], "already_answered");
    assert_eq!(
        lost["error"]["job"], *ended,
        "the conflict shows the job as it ended"
    );
    let (status, gone) = body(late).await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (410, Some("gone"))
    );
    assert_eq!(gone["error"]["job"]["state"], "expired");
    let finishes = r#"{kind="finish"}"#;
    assert_eq!(
        metric(&bc, &format!("backchannel_batch_jobs_sum{finishes}")).await,
        4.0
    );
}

#[tokio::test]
async fn a_batch_whose_connection_dies_fails_clearly_and_retries_create_once() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let first_hold = hold_key(&db, "first").await;
    let second_hold = hold_key(&db, "second").await;
    let first = bc.spawn_submit(json!({"kind": "k", "idempotency_key": "first"}), 0.0);
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let keys = ["second", "k1", "k2"];
    let batch: Vec<_> = keys
        .iter()
        .map(|key| bc.spawn_submit(json!({"kind": "k", "idempotency_key": key}), 0.0))
        .collect();
    queued(&bc, "insert", 3.0).await;
    first_hold.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(body(first).await.0, 202);
    // The batch of three is in flight, waiting for the key "second": its
    // connection dies.
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let killed: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    for response in batch {
        let (status, error) = body(response).await;
        assert_eq!(status, 503, "{error}");
        assert_eq!(error["error"]["code"], "database_unavailable");
    }
    second_hold.batch_execute("ROLLBACK").await.unwrap();

    // Retried with the same keys: one job each, however often.
    for _ in 0..2 {
        for key in keys {
            let r = bc
                .submit(json!({"kind": "k", "idempotency_key": key}), None)
                .await;
            assert_eq!(r.status, 202, "{:?}", r.body);
        }
    }
    let sql = db.client().await;
    for key in keys {
        let n: i64 = sql
            .query_one(
                "SELECT count(*) FROM backchannel.jobs WHERE idempotency_key = $1::text",
                &[&key],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "key {key}");
    }
}
