//! A server backend is not an instance. Behind a session-mode pooler (and no
//! direct URL), the backend that served one instance's pooled connection
//! serves another client once that connection closes; a pid that was once
//! this instance's can send another instance's notifications. Every
//! `backchannel_done` heard must reach the waiters here, whoever sent it.

use std::time::Duration;

use backchannel::config::Settings;
use serde_json::json;

use crate::support::pgbouncer::{self, PgBouncer};
use crate::support::procs::TempCluster;
use crate::support::proxy::Proxy;
use crate::support::*;

/// The pids of the backends serving connections named `application_name`.
async fn backends(observer: &tokio_postgres::Client, application_name: &str) -> Vec<i32> {
    observer
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Whether every backend in `pids` is idle in the pooler, reset for its next client.
async fn released(observer: &tokio_postgres::Client, pids: &[i32]) -> bool {
    let reset: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE pid = ANY($1) AND state = 'idle' AND query = 'DISCARD ALL'",
            &[&pids],
        )
        .await
        .unwrap()
        .get(0);
    reset == pids.len() as i64
}

#[tokio::test]
async fn an_answer_sent_by_a_backend_this_pool_once_used_wakes_the_waiters_here() {
    if !pgbouncer::required() {
        return;
    }
    init_tracing();
    let cluster = TempCluster::start();
    let direct = cluster.database("bc").await;
    // Room for a's LISTEN session, a's pooled connection (then b's) and the
    // one a opens after that.
    let bouncer = PgBouncer::start_session(3, cluster.port);
    let proxy = Proxy::start(bouncer.port).await;
    let observer = connect(&direct).await;

    // Instance a: everything through the pooler, no direct URL. Nothing
    // periodic: only a notification can wake its waiter within the test.
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/bc", proxy.port);
    let mut settings = Settings::new(&through_proxy, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 4;
    settings.reaper_interval = Duration::from_secs(3600);
    settings.recheck_interval = Duration::from_secs(3600);
    let a = instance_with(settings).await;
    let id = a.submit_job("shared", json!(null)).await;
    let waiting = a.spawn_get(id, 30.0);
    assert!(a.waiting_eventually(1, LONG).await, "a request waits on a");

    // a's pooled connections close; the pooler keeps their backends for its
    // next clients. a's LISTEN session stays up.
    let pooled = backends(&observer, "backchannel").await;
    assert!(!pooled.is_empty(), "a's pool is connected");
    assert!(
        proxy.cut("backchannel") > 0,
        "a's pooled connections are cut"
    );
    assert!(
        eventually(LONG, || released(&observer, &pooled)).await,
        "the pooler keeps the backends of a's pool"
    );

    // Instance b: its pool through the same pooler (on a backend a's pool
    // used), its sessions direct. It answers a's job.
    let mut done = Notifications::listen(&direct, "backchannel_done").await;
    let mut settings = Settings::new(&bouncer.url("bc"), &[SUBMITTER], &[LISTENER]);
    settings.direct_database_url = Some(direct.clone());
    settings.pool_size = 1;
    let b = instance_with(settings).await;
    assert_eq!(b.answer(id, json!({"result": "from b"})).await.status, 200);
    let sender = done
        .sender_of(&id.to_string(), LONG)
        .await
        .expect("b's answer is notified");
    assert!(
        pooled.contains(&sender),
        "the scenario: b's answer was sent by backend {sender}, which served a's pool ({pooled:?})"
    );

    // a's waiter is woken by it (its safety re-check is an hour away).
    let response = tokio::time::timeout(LONG, waiting)
        .await
        .expect("a's waiter is woken by b's answer")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body["state"], "done");
    assert_eq!(response.body["result"], "from b");
}
