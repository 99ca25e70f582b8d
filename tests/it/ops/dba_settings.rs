//! The DBA's settings: timeouts set on the database, a read-only database,
//! and several hosts with `target_session_attrs=read-write`.

use std::time::Duration;

use backchannel::app;
use backchannel::config::Settings;
use backchannel::store::Target;
use serde_json::json;

use crate::support::procs::TempCluster;
use crate::support::*;

/// Backend pids by application name, on a connection of its own (the test
/// database's own sessions are subject to its idle_session_timeout).
async fn pids(db: &TestDb, application: &str) -> Vec<i32> {
    let client = connect(&db.url).await;
    let mut pids: Vec<i32> = client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
             AND application_name = $1",
            &[&application],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    pids.sort();
    pids
}

#[tokio::test]
async fn dedicated_sessions_outlive_the_dbas_timeouts() {
    let db = TestDb::new().await;
    let admin = connect(&admin_url()).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {0} SET idle_in_transaction_session_timeout = '2s';
             ALTER DATABASE {0} SET statement_timeout = '1s';",
            db.name
        ))
        .await
        .unwrap();
    // idle_session_timeout is PostgreSQL 14+ (make test-pg-versions runs 13 too).
    let idle_session_timeout = server_version(&admin).await >= 140000;
    if idle_session_timeout {
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} SET idle_session_timeout = '2s'",
                db.name
            ))
            .await
            .unwrap();
    }
    // The default heartbeat (15 s): the stream's session idles far longer
    // than idle_session_timeout between claims.
    let a = instance(&db).await;
    let b = instance(&db).await;
    let mut sse = a.stream(None).await.expect("stream");
    let stream_session = pids(&db, "backchannel-session").await;
    let listen_sessions = pids(&db, "backchannel-listen").await;
    assert_eq!((stream_session.len(), listen_sessions.len()), (1, 2));

    // Held for 10 s (five idle_session_timeouts): the stream stays open...
    assert!(
        !sse.ended(Duration::from_secs(10)).await,
        "the stream survives idle_session_timeout"
    );
    // ...on the same sessions, and delivers a job submitted elsewhere.
    assert_eq!(pids(&db, "backchannel-session").await, stream_session);
    assert_eq!(pids(&db, "backchannel-listen").await, listen_sessions);
    let waiting = b.spawn_submit(json!({"kind": "after.idle"}), 30.0);
    let id = sse.next_job(LONG).await.expect("delivered")["id"]
        .as_i64()
        .unwrap();
    assert_eq!(a.answer(id, json!({"result": "ok"})).await.status, 200);
    let done = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(done.status(), 200);

    // A statement that hits statement_timeout (57014) is a clean 503.
    let locker = connect(&db.url).await;
    if idle_session_timeout {
        locker
            .batch_execute("SET idle_session_timeout = 0")
            .await
            .unwrap();
    }
    locker
        .batch_execute(
            "SET idle_in_transaction_session_timeout = 0;
             BEGIN; LOCK TABLE backchannel.jobs IN SHARE MODE;",
        )
        .await
        .unwrap();
    let r = b.submit(json!({"kind": "blocked"}), None).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "database_unavailable");
    assert!(r.headers.contains_key("retry-after"));
    locker.batch_execute("ROLLBACK").await.unwrap();
    // And the stream lives on.
    let id = b.submit_job("after.timeout", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.expect("delivered")["id"], id);
}

#[tokio::test]
async fn a_read_only_database_is_a_503_and_read_write_is_chosen() {
    let db = TestDb::new().await;
    // The same database name on a server of its own, migrated, then read-only.
    let cluster = TempCluster::start();
    let read_only = cluster.database(&db.name).await;
    let target = Target::new(&read_only, "DATABASE_URL").unwrap();
    app::migrate(&target).await.unwrap();
    connect(&cluster.url("postgres"))
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            db.name
        ))
        .await
        .unwrap();

    let mut settings = Settings::new(&read_only, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 2;
    let ro = instance_unready(settings).await;
    let readyz = || async {
        let r = ro.send(ro.http.get(ro.url("/readyz"))).await;
        (
            r.status,
            r.body["error"]["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (status, reason) = readyz().await;
    assert_eq!(status, 503);
    assert!(reason.contains("read-only"), "{reason}");
    let r = ro.submit(json!({"kind": "write"}), Some(1.0)).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "database_read_only");
    assert!(r.headers.contains_key("retry-after"));
    let r = ro.stream(None).await.err().expect("no stream");
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.code(), "database_read_only");
    assert_eq!(ro.get(1, None).await.status, 404, "reads still work");

    // Two hosts, the read-only one first: read-write picks the other.
    let (host, port) = admin_server();
    let both = format!(
        "postgres://postgres@127.0.0.1:{},{host}:{port}/{}?target_session_attrs=read-write",
        cluster.port, db.name
    );
    let mut settings = Settings::new(&both, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 2;
    let rw = instance_with(settings).await;
    let mut sse = rw.stream(None).await.expect("stream");
    let id = rw.submit_job("read.write", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.expect("job")["id"], id);
    assert_eq!(db.count_jobs().await, 1, "stored on the writable server");
}
