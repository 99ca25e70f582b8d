//! One request's trouble stays its own: a key or a job row another session
//! holds, a row another application wrote that cannot be read back, a full
//! queue. Each case shows the other requests answered while the troubled
//! one still waits (or failed alone), never by timing.

use serde_json::{Value, json};

use crate::support::procs;
use crate::support::*;

async fn metric(bc: &Instance, series: &str) -> f64 {
    sample(&bc.metrics().await, series).unwrap_or_else(|| panic!("{series} not in /metrics"))
}

async fn done(response: Pending) -> Reply {
    tokio::time::timeout(LONG, response).await.unwrap().unwrap()
}

/// Wait until `n` requests of `kind` wait for the next batch.
async fn queued(bc: &Instance, kind: &str, n: f64) {
    let series = format!("backchannel_batch_queued{{kind=\"{kind}\"}}");
    assert!(
        eventually(LONG, || async { metric(bc, &series).await == n }).await,
        "{n} {kind} requests gather for the next batch"
    );
}

#[tokio::test]
async fn a_key_held_by_an_open_transaction_delays_only_its_own_submit() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    // Another application submits through SQL and keeps its transaction
    // open (Django with ATOMIC_REQUESTS).
    let app = db.client().await;
    app.batch_execute("BEGIN").await.unwrap();
    let held: i64 = app
        .query_one(
            "SELECT backchannel.submit('k', '{}', interval '1 hour', 'K1')",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let same_key = bc.spawn_submit(json!({"kind": "k", "idempotency_key": "K1"}), 0.0);
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let mut others: Vec<Pending> = (0..5)
        .map(|n| bc.spawn_submit(json!({"kind": "k", "payload": n}), 0.0))
        .collect();
    others.push(bc.spawn_submit(json!({"kind": "k", "idempotency_key": "K2"}), 0.0));
    for other in others {
        let reply = done(other).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    assert!(
        !same_key.is_finished(),
        "the submit with the held key still waits"
    );
    assert_eq!(db.lock_waits().await, 1, "only it waits");
    assert_eq!(
        metric(&bc, r#"backchannel_batch_alone_total{kind="insert"}"#).await,
        1.0
    );

    app.batch_execute("COMMIT").await.unwrap();
    let reply = done(same_key).await;
    assert!(reply.status < 300, "{}", reply.body);
    assert_eq!(reply.body["id"], held, "the key's job is the application's");
    assert_eq!(db.count_jobs().await, 7);
}

#[tokio::test]
async fn a_locked_job_row_delays_only_its_own_answer() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let locked = bc.submit_job("k", json!("locked")).await;
    let answered = bc.submit_job("k", json!("answered")).await;
    let cancelled = bc.submit_job("k", json!("cancelled")).await;
    // A report, a DBA's query: the row is locked and stays so.
    let report = db.lock_row(locked).await;

    let waits = bc.spawn(bc.answer_request(locked, &json!({"result": "late"})));
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let answer = bc.answer(answered, json!({"result": "on time"})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let cancel = bc.cancel(cancelled).await;
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert!(
        !waits.is_finished(),
        "the answer of the locked job still waits"
    );
    assert_eq!(
        metric(&bc, r#"backchannel_batch_alone_total{kind="finish"}"#).await,
        1.0
    );

    report.batch_execute("ROLLBACK").await.unwrap();
    let reply = done(waits).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["state"], "done");
    assert_eq!(reply.body["result"], "late");
}

/// Another application writes a job with `key` whose `created_at` no
/// program reads (`infinity`).
async fn unreadable_row(db: &TestDb, key: Option<&str>) -> i64 {
    db.client()
        .await
        .query_one(
            "INSERT INTO backchannel.jobs (kind, payload, deadline, idempotency_key, created_at)
             VALUES ('k', 'null', now() + interval '1 hour', $1::text, 'infinity') RETURNING id",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn an_unreadable_row_in_a_batch_of_submits_fails_alone_and_nothing_is_inserted_twice() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    unreadable_row(&db, Some("bad")).await;
    // A batch in flight, held by a table lock, while the next one gathers.
    let lock = db.lock_table().await;
    let first = bc.spawn_submit(json!({"kind": "k", "payload": "first"}), 0.0);
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let keyless: Vec<Pending> = (0..48)
        .map(|n| bc.spawn_submit(json!({"kind": "k", "payload": n}), 0.0))
        .collect();
    let bad = bc.spawn_submit(json!({"kind": "k", "idempotency_key": "bad"}), 0.0);
    queued(&bc, "insert", 49.0).await;
    lock.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(done(first).await.status, 202);
    let mut ids = Vec::new();
    for reply in keyless {
        let reply = done(reply).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        ids.push(reply.body["id"].as_i64().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 48, "48 jobs, one each");
    let bad = done(bad).await;
    assert_eq!(bad.status, 500, "{}", bad.body);
    // The unreadable row, the first submit and exactly 48 more.
    assert_eq!(db.count_jobs().await, 50);
}

#[tokio::test]
async fn an_unreadable_row_in_a_batch_of_cancels_fails_alone() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;
    let holder = bc.submit_job("k", json!(0)).await;
    let jobs: Vec<i64> = [
        bc.submit_job("k", json!(1)).await,
        bc.submit_job("k", json!(2)).await,
        bc.submit_job("k", json!(3)).await,
    ]
    .to_vec();
    let sql = db.client().await;
    sql.execute(
        "UPDATE backchannel.jobs SET created_at = 'infinity' WHERE id = $1",
        &[&jobs[1]],
    )
    .await
    .unwrap();
    let lock = db.lock_table().await;
    let first = bc.spawn(bc.cancel_request(holder));
    assert!(eventually(LONG, || async { db.lock_waits().await == 1 }).await);
    let cancels: Vec<Pending> = jobs
        .iter()
        .map(|&id| bc.spawn(bc.cancel_request(id)))
        .collect();
    queued(&bc, "finish", 3.0).await;
    lock.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(done(first).await.status, 200);
    let replies: Vec<Reply> = futures_util::future::join_all(cancels.into_iter().map(done)).await;
    assert_eq!(replies[0].status, 200, "{}", replies[0].body);
    assert_eq!(replies[2].status, 200, "{}", replies[2].body);
    assert_eq!(replies[1].status, 500, "{}", replies[1].body);
    let states: Vec<String> = sql
        .query(
            "SELECT state FROM backchannel.jobs WHERE id = ANY($1) ORDER BY id",
            &[&jobs],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        states,
        ["cancelled", "cancelled", "cancelled"],
        "the unreadable job was cancelled too: only its answer failed"
    );
}

#[tokio::test]
async fn a_full_batch_queue_refuses_with_503_and_stores_nothing() {
    let db = TestDb::new().await;
    let mut settings = quiet_settings(&db);
    settings.max_queued = 2;
    let bc = instance_with(settings).await;
    let lock = db.lock_table().await;
    let first = bc.spawn_submit(json!({"kind": "k", "payload": "first"}), 0.0);
    // (At least one: on a loaded server another session of this database
    // was seen waiting too; the first submit is what this waits for.)
    assert!(eventually(LONG * 3, || async { db.lock_waits().await >= 1 }).await);
    let queued_two: Vec<Pending> = (0..2)
        .map(|n| bc.spawn_submit(json!({"kind": "k", "payload": n}), 0.0))
        .collect();
    queued(&bc, "insert", 2.0).await;
    let refused = bc
        .submit(json!({"kind": "k", "payload": "one too many"}), None)
        .await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.code(), "overloaded");
    assert!(refused.headers.contains_key("retry-after"));
    lock.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(done(first).await.status, 202);
    for reply in queued_two {
        assert_eq!(done(reply).await.status, 202);
    }
    let payloads: Vec<Value> = db
        .client()
        .await
        .query("SELECT payload FROM backchannel.jobs", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(payloads.len(), 3);
    assert!(!payloads.contains(&json!("one too many")));
}

/// PostgreSQL 17's smallest notification queue (64 pages), filled while a
/// listening session idles in a transaction: a submit and an answer that
/// would notify still commit (nothing is 500), the stream gets the job by
/// its own claim, a waiter on another instance is woken by the re-check,
/// and `/readyz` names the delay.
#[tokio::test]
async fn a_full_notification_queue_never_fails_a_write() {
    use std::time::Duration;
    let cluster = procs::TempCluster::start_major(17, &["max_notify_queue_pages=64"]);
    let url = cluster.database("bc").await;
    let mut settings = backchannel::config::Settings::new(&url, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 4;
    settings.heartbeat = Duration::from_secs(1);
    settings.recheck_interval = Duration::from_secs(1);
    let streaming = instance_with(settings.clone()).await;
    let other = instance_with(settings).await;
    let mut sse = streaming.stream(None).await.expect("stream");

    // A session that listens, then idles in a transaction: the queue cannot
    // be trimmed past it.
    let idle = connect(&url).await;
    idle.batch_execute("LISTEN filler").await.unwrap();
    idle.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let filler = connect(&url).await;
    let mut full = false;
    for _ in 0..100_000 {
        match filler
            .execute("SELECT pg_notify('filler', repeat('x', 7000))", &[])
            .await
        {
            Ok(_) => {}
            Err(error) => {
                assert_eq!(error.code().map(|c| c.code()), Some("54000"), "{error}");
                full = true;
                break;
            }
        }
    }
    assert!(full, "the notification queue filled up");

    // Submitted where the stream is not: its commit would notify.
    let submitted = other.submit(json!({"kind": "k", "payload": 1}), None).await;
    assert_eq!(submitted.status, 202, "{}", submitted.body);
    let id = submitted.body["id"].as_i64().unwrap();
    let job = sse
        .next_job(LONG)
        .await
        .expect("the stream claims it anyway");
    assert_eq!(job["id"], id);

    let waiter = streaming.spawn_get(id, 30.0);
    assert!(streaming.waiting_eventually(1, LONG).await);
    let answered = other.answer(id, json!({"result": "ok"})).await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    let woken = tokio::time::timeout(LONG, waiter).await.unwrap().unwrap();
    assert_eq!(woken.status, 200, "{}", woken.body);
    assert_eq!(woken.body["state"], "done");

    let deferred = sample(
        &other.metrics().await,
        "backchannel_notifications_deferred_total",
    )
    .unwrap();
    assert!(deferred >= 2.0, "{deferred}");
    let ready = other.send(other.http.get(other.url("/readyz"))).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["degraded"], json!(["notifications_delayed"]));
    idle.batch_execute("COMMIT").await.unwrap();
}
