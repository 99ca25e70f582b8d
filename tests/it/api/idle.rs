//! Waiting costs the database nothing: no connection held, no query sent.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn three_hundred_waiters_cost_no_queries_and_no_connections() {
    let db = TestDb::new().await;
    // The reaper (1 tick/s) and the safety re-check (one query per 5 s for all
    // waiters together) are the only periodic queries; they are pushed out here
    // so that the window below must see exactly zero.
    let settings = quiet_settings(&db);
    let bc = instance_with(settings).await;
    let ids: Vec<i64> =
        futures_util::future::join_all((0..300).map(|i| bc.submit_job("idle", json!(i)))).await;

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let waiters = Instance::at(&bc.base, http);
    let waits: Vec<_> = ids.iter().map(|id| waiters.spawn_get(*id, 30.0)).collect();
    assert!(
        bc.waiting_eventually(300, LONG * 3).await,
        "300 requests wait"
    );
    let broker = bc.running().broker.clone();

    // Registered is not yet asleep: each waiter reads its row once after
    // registering. Let those reads finish before the window opens.
    let mut settled = broker.statements();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = broker.statements();
        if now == settled {
            break;
        }
        settled = now;
    }
    let observer = db.client().await;
    let window_start: chrono::DateTime<chrono::Utc> = observer
        .query_one("SELECT now()", &[])
        .await
        .unwrap()
        .get(0);
    let statements_before = broker.statements();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let statements_after = broker.statements();
    assert_eq!(
        statements_after, statements_before,
        "no statement sent while waiting"
    );

    // No backend of this database started a query during the window.
    let busy: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND (query_start >= $1 OR state <> 'idle')",
            &[&window_start],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        busy, 0,
        "the database saw no work while 300 requests waited"
    );

    // Connections: at most the pool plus the LISTEN session (no stream is open).
    let connections = db.connections(&observer).await;
    assert!(
        connections <= 4 + 1,
        "{connections} connections for a pool of 4"
    );

    // They all still answer: cancel everything and each waiter wakes with 200.
    for id in &ids {
        assert_eq!(bc.cancel(*id).await.status, 200);
    }
    for wait in waits {
        let response = wait.await.unwrap();
        assert_eq!(response.status(), 200);
    }
}
