//! The database goes away: real backends terminated, a real PostgreSQL
//! stopped and started again, every connection slot taken. Nothing is mocked.

use std::time::Duration;

use serde_json::json;
use tokio_postgres::NoTls;

use crate::support::procs::TempCluster;
use crate::support::*;

#[tokio::test]
async fn all_backends_terminated_while_waiting_and_streaming() {
    terminated_while_waiting_and_streaming(true).await;
}

/// The same across instances that each do their own work: the waiter is on
/// A, woken by B's answer through `backchannel_done`.
#[tokio::test]
async fn all_backends_terminated_while_waiting_and_streaming_without_forwarding() {
    terminated_while_waiting_and_streaming(false).await;
}

async fn terminated_while_waiting_and_streaming(forwarding: bool) {
    let db = TestDb::new().await;
    let settings = || match forwarding {
        true => settings(&db),
        false => settings_without_forwarding(&db),
    };
    let a = instance_with(settings()).await;
    let b = instance_with(settings()).await;
    let id = a.submit_job("fault", json!({"n": 1})).await;
    let mut sse = b.stream(None).await.expect("stream");
    assert_eq!(sse.next_job(LONG).await.expect("job")["id"], id);
    if forwarding {
        let knows = || async { a.running().broker.forward_target().is_some() };
        assert!(
            eventually(LONG, knows).await,
            "A learns where the stream is"
        );
    }
    let waiting = a.spawn_get(id, 60.0);
    // Forwarded, the wait is held by the stream's holder (B).
    let waits_on = if forwarding { &b } else { &a };
    assert!(waits_on.waiting_eventually(1, LONG).await);

    let admin = db.client().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        killed >= 3,
        "pool, LISTEN and stream sessions were terminated ({killed})"
    );

    assert!(
        sse.ended(LONG).await,
        "the stream ends when its lock session dies"
    );
    for instance in [&a, &b] {
        assert!(
            eventually(LONG, || ready(instance)).await,
            "the instance becomes ready again"
        );
    }
    // After recovery, an answer given on the other instance wakes the waiter on A.
    let r = b.answer(id, json!({"result": "after recovery"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let response = tokio::time::timeout(LONG, waiting)
        .await
        .expect("waiter wakes")
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.body;
    assert_eq!(body["result"], "after recovery");
}

#[tokio::test]
async fn postgres_restart_ends_the_stream_and_everything_recovers() {
    init_tracing();
    let cluster = TempCluster::start();
    let url = cluster.database("bc").await;
    let mut settings = backchannel::config::Settings::new(&url, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 4;
    let bc = instance_with(settings).await;

    let id = bc.submit_job("restart", json!(1)).await;
    let mut sse = bc.stream(None).await.expect("stream");
    assert_eq!(sse.next_job(LONG).await.expect("job")["attempt"], 1);

    cluster.stop();
    assert!(sse.ended(LONG).await, "the stream ends with the database");
    assert!(
        eventually(LONG, || async { !ready(&bc).await }).await,
        "/readyz goes 503"
    );
    let r = bc.get(id, None).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "database_unavailable");
    let r = bc.submit(json!({"kind": "while.down"}), Some(1.0)).await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"));
    // A waiting GET does not hang past its own wait while the database is down.
    let r = tokio::time::timeout(Duration::from_secs(15), bc.get(id, Some(1.0)))
        .await
        .expect("no hang");
    assert_eq!(r.status, 503);

    cluster.start_again();
    assert!(
        eventually(Duration::from_secs(20), || ready(&bc)).await,
        "/readyz back to 200"
    );
    let mut sse = bc
        .stream_eventually(None, LONG)
        .await
        .expect("a new stream opens");
    let job = sse
        .next_job(LONG)
        .await
        .expect("the unanswered job is redelivered");
    assert_eq!(job["id"], id);
    assert_eq!(job["attempt"], 2);
    let fresh = bc.submit_job("after.restart", json!(2)).await;
    assert_eq!(
        sse.next_job(LONG).await.expect("new jobs flow")["id"],
        fresh
    );
    assert_eq!(bc.answer(fresh, json!({"result": 2})).await.status, 200);
    assert_eq!(bc.get(fresh, None).await.body["state"], "done");
}

/// A server with every connection slot taken answers `53300`: requests that
/// need a new connection get `503` with `Retry-After` (it was a 500), and the
/// instance recovers when slots free up.
#[tokio::test]
async fn a_full_server_is_a_503_not_a_500() {
    init_tracing();
    // 6 slots, 3 kept for superusers: 3 for the broker's role and the filler.
    let cluster =
        TempCluster::start_with(&["max_connections=6", "superuser_reserved_connections=3"]);
    let admin = connect(&cluster.url("postgres")).await;
    for statement in ["CREATE ROLE bc LOGIN", "CREATE DATABASE bc OWNER bc"] {
        admin.batch_execute(statement).await.unwrap();
    }
    let url = format!("postgres://bc@127.0.0.1:{}/bc", cluster.port);
    let mut settings = backchannel::config::Settings::new(&url, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 1;
    settings.recheck_interval = Duration::from_secs(3600);
    let bc = instance_with(settings).await;
    let id = bc.submit_job("full", json!(1)).await;

    // Take every slot left, then end the broker's pooled connection and take
    // its slot too: the next request needs a new connection.
    let mut fillers = Vec::new();
    fill(&url, &mut fillers).await;
    let ended: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = 'bc' AND application_name = 'backchannel'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "the pool's one connection");
    assert!(
        eventually(LONG, || async {
            let taken: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bc'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            taken < 3
        })
        .await
    );
    fill(&url, &mut fillers).await;

    let r = bc.get(id, None).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "database_unavailable"),
        "{:?}",
        r.body
    );
    assert!(r.headers.contains_key("retry-after"));
    let r = bc.submit(json!({"kind": "full"}), None).await;
    assert_eq!(r.status, 503, "{:?}", r.body);

    drop(fillers);
    assert!(
        eventually(LONG, || async { bc.get(id, None).await.status == 202 }).await,
        "the instance recovers once slots are free"
    );
}

/// Open connections to `url` until the server refuses one.
async fn fill(url: &str, fillers: &mut Vec<tokio_postgres::Client>) {
    while let Ok((client, connection)) = tokio_postgres::connect(url, NoTls).await {
        tokio::spawn(connection);
        fillers.push(client);
    }
}
