//! Waiting costs the database nothing: no connection held, no query sent;
//! and a job ended here is handed to its waiters without reading it back.

use std::time::Duration;

use backchannel::job::CHANNEL_DONE;
use backchannel::telemetry::metrics::ChannelLabel;
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

/// `backchannel_done` notifications this instance's LISTEN session heard.
fn done_heard(bc: &Instance) -> u64 {
    bc.running()
        .broker
        .metrics()
        .wake
        .notifications_received
        .get_or_create(&ChannelLabel {
            channel: CHANNEL_DONE,
        })
        .get()
}

/// Statements `bc` sends for `end`, once its own `backchannel_done` was
/// heard back and nothing more follows.
async fn statements_for<F: std::future::Future<Output = ()>>(bc: &Instance, end: F) -> u64 {
    let broker = bc.running().broker.clone();
    let (before, heard) = (broker.statements(), done_heard(bc));
    end.await;
    assert!(
        eventually(LONG, || async { done_heard(bc) > heard }).await,
        "the instance hears its own notification"
    );
    let mut settled = broker.statements();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = broker.statements();
        if now == settled {
            return now - before;
        }
        settled = now;
    }
}

#[tokio::test]
async fn an_end_given_here_is_not_read_back_when_its_notification_is_heard() {
    let db = TestDb::new().await;
    let bc = instance_with(quiet_settings(&db)).await;

    // Nobody waits: what an answer and a cancel cost.
    let answered = bc.submit_job("alone", json!(null)).await;
    let answer_alone = statements_for(&bc, async {
        assert_eq!(bc.answer(answered, json!({"result": 1})).await.status, 200);
    })
    .await;
    let cancelled = bc.submit_job("alone", json!(null)).await;
    let cancel_alone = statements_for(&bc, async {
        assert_eq!(bc.cancel(cancelled).await.status, 200);
    })
    .await;

    // Requests wait here: they are handed the job, and the instance's own
    // notification, heard back, is not read back (no statement more).
    for cancel in [false, true] {
        let id = bc.submit_job("waited", json!(null)).await;
        let waits: Vec<_> = (0..3).map(|_| bc.spawn_get(id, 30.0)).collect();
        assert!(bc.waiting_eventually(3, LONG).await, "three requests wait");
        let cost = statements_for(&bc, async {
            let ended = if cancel {
                bc.cancel(id).await
            } else {
                bc.answer(id, json!({"result": 2})).await
            };
            assert_eq!(ended.status, 200);
            for wait in waits {
                let response = wait.await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(
                    response.body["state"],
                    if cancel { "cancelled" } else { "done" }
                );
            }
        })
        .await;
        let alone = if cancel { cancel_alone } else { answer_alone };
        assert_eq!(
            cost, alone,
            "ending a job three requests wait for costs what ending it alone does (cancel: {cancel})"
        );
    }
}
