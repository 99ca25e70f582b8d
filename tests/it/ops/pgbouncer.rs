//! A real PgBouncer in transaction mode in front of the query pool
//! (`DATABASE_URL`), PostgreSQL itself behind `BACKCHANNEL_DIRECT_DATABASE_URL`,
//! and the pool's statements sent unnamed, as Debian 12's PgBouncer 1.18 (no
//! prepared statements in transaction mode) needs: set from the start
//! (`BACKCHANNEL_STATEMENTS=unnamed`), or by the pool itself on the first
//! sign of the pooler (no setting, two broker processes). It keeps 2 server
//! connections for all pooled clients, so statements of different clients
//! share server connections. And without a pooler, the pool and the
//! dedicated sessions on URLs of their own.

use std::time::Duration;

use backchannel::config::{Settings, StatementMode};
use serde_json::json;

use crate::support::pgbouncer::{self, PgBouncer};
use crate::support::procs::{BrokerProcess, TempCluster};
use crate::support::*;

#[tokio::test]
async fn through_pgbouncer_in_transaction_mode() {
    if !pgbouncer::required() {
        return;
    }
    init_tracing();
    let cluster = TempCluster::start();
    let direct = cluster.database("bc").await;
    let bouncer = PgBouncer::start(cluster.port);
    let settings = || {
        let mut settings = Settings::new(&bouncer.url("bc"), &[SUBMITTER], &[LISTENER]);
        settings.direct_database_url = Some(direct.clone());
        settings.statements = StatementMode::Unnamed;
        settings.pool_size = 4;
        settings
    };
    let a = instance_with(settings()).await;
    let b = instance_with(settings()).await;

    // Round trips, many at once, across both instances.
    let mut sse = a.stream(None).await.expect("stream");
    let submits: Vec<_> = (0..16)
        .map(|n| {
            let on = if n % 2 == 0 { &a } else { &b };
            on.spawn_submit(json!({"kind": "pooled", "payload": {"n": n}}), 30.0)
        })
        .collect();
    for _ in 0..16 {
        let job = sse.next_job(LONG).await.expect("every job arrives");
        let id = job["id"].as_i64().unwrap();
        let answer = json!({"result": job["payload"]["n"]});
        let on = if id % 2 == 0 { &a } else { &b };
        assert_eq!(on.answer(id, answer).await.status, 200);
    }
    for (n, submit) in submits.into_iter().enumerate() {
        let response = tokio::time::timeout(LONG, submit).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let body = response.body;
        assert_eq!(body["result"], n);
    }

    // A wait on one instance, woken by an answer on the other.
    let id = a.submit_job("across", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.expect("job")["id"], id);
    let waiting = b.spawn_get(id, 30.0);
    assert!(b.waiting_eventually(1, LONG).await);
    assert_eq!(a.answer(id, json!({"result": "across"})).await.status, 200);
    let response = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    for instance in [&a, &b] {
        let metrics = instance.metrics().await;
        assert_eq!(
            sample(&metrics, "backchannel_db_statements_unnamed"),
            Some(1.0)
        );
    }

    // The database restarts behind PgBouncer: everything comes back.
    cluster.stop();
    assert!(sse.ended(LONG).await, "the stream ends with the database");
    let r = a.submit(json!({"kind": "while.down"}), None).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(r.headers.contains_key("retry-after"));
    cluster.start_again();
    for instance in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(20), || ready(instance)).await,
            "ready again"
        );
    }
    let mut sse = b
        .stream_eventually(None, LONG)
        .await
        .expect("a stream again");
    let id = a.submit_job("after.restart", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.expect("job")["id"], id);
    let waiting = a.spawn_get(id, 30.0);
    assert_eq!(b.answer(id, json!({"result": 2})).await.status, 200);
    let response = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
}

/// Round trips in the default-settings test, and how many are in flight at once.
const ROUND_TRIPS: usize = 200;
const AT_ONCE: usize = 25;

/// Two `backchannel serve` processes whose `DATABASE_URL` goes through
/// PgBouncer in transaction mode with no statement setting, as a user who
/// points the URL at their pooler runs them. Each pool starts preparing its
/// statements; two processes name theirs alike (`s0`, `s1`, ...), and 8
/// pooled clients per instance share PgBouncer's 2 server connections, so a
/// statement soon lands where its name is missing (26000) or taken (42P05).
/// That statement never ran: it is sent again unnamed at once and the pool
/// stays unnamed. No request sees it: 200 round trips across the two, every
/// submit answered with its own result, every answer 200.
#[tokio::test]
async fn through_pgbouncer_with_no_statement_setting() {
    if !pgbouncer::required() {
        return;
    }
    let cluster = TempCluster::start();
    let direct = cluster.database("bc").await;
    let bouncer = PgBouncer::start(cluster.port);
    let env = [
        ("BACKCHANNEL_DIRECT_DATABASE_URL", direct.as_str()),
        ("BACKCHANNEL_POOL_SIZE", "8"),
    ];
    let processes = [
        BrokerProcess::spawn_logged(&bouncer.url("bc"), &env).await,
        BrokerProcess::spawn_logged(&bouncer.url("bc"), &env).await,
    ];
    let [a, b] = [processes[0].client(), processes[1].client()];
    let on = |n: usize| if n % 2 == 0 { &a } else { &b };
    let mut sse = a.stream(None).await.expect("stream");

    let mut failures = Vec::new();
    for wave in 0..ROUND_TRIPS / AT_ONCE {
        let numbers: Vec<usize> = (wave * AT_ONCE..(wave + 1) * AT_ONCE).collect();
        let submits: Vec<_> = numbers
            .iter()
            .map(|&n| on(n).spawn_submit(json!({"kind": "bounced", "payload": {"n": n}}), 20.0))
            .collect();
        // Each job is answered on the instance it was not submitted to.
        let mut answers = Vec::new();
        for _ in &numbers {
            let Some(job) = sse.next_job(LONG).await else {
                failures.push(format!("wave {wave}: a job never reached the stream"));
                break;
            };
            let n = job["payload"]["n"].as_u64().unwrap() as usize;
            let id = job["id"].as_i64().unwrap();
            answers.push(on(n + 1).spawn(on(n + 1).answer_request(id, &json!({"result": n}))));
        }
        for answer in answers {
            let answer = answer.await.unwrap();
            if answer.status != 200 {
                failures.push(format!("answer: {} {}", answer.status, answer.text));
            }
        }
        for (n, submit) in numbers.into_iter().zip(submits) {
            let submit = submit.await.unwrap();
            if submit.status != 200 || submit.body["result"] != n {
                failures.push(format!("submit {n}: {} {}", submit.status, submit.text));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures in {ROUND_TRIPS} round trips: {failures:#?}",
        failures.len()
    );

    // At least one pool saw the pooler and switched, said so once, and shows it.
    let mut switched = 0;
    for (process, instance) in processes.iter().zip([&a, &b]) {
        let unnamed = sample(
            &instance.metrics().await,
            "backchannel_db_statements_unnamed",
        );
        let said = process
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("BACKCHANNEL_STATEMENTS=unnamed"))
            .count();
        match unnamed {
            Some(1.0) => {
                switched += 1;
                assert_eq!(said, 1, "the switch is logged once");
            }
            Some(0.0) => assert_eq!(said, 0),
            other => panic!("backchannel_db_statements_unnamed: {other:?}"),
        }
    }
    assert!(switched >= 1, "no pool switched to unnamed statements");
}

#[tokio::test]
async fn the_pool_and_the_dedicated_sessions_can_use_different_urls() {
    let db = TestDb::new().await;
    let mut settings = settings(&db);
    settings.database_url = format!("{}?application_name=bc_pooled", db.url);
    settings.direct_database_url = Some(format!("{}?application_name=bc_direct", db.url));
    let bc = instance_with(settings).await;
    let mut sse = bc.stream(None).await.expect("stream");
    let id = bc.submit_job("split", json!(null)).await;
    assert_eq!(sse.next_job(LONG).await.unwrap()["id"], id);

    let observer = db.client().await;
    let app_of = |sql: &'static str| {
        let observer = &observer;
        async move {
            observer
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let lock_holder = app_of(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.locktype = 'advisory' AND l.granted AND l.objid = 1 AND l.objsubid = 2
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(
        lock_holder,
        vec!["bc_direct"],
        "the stream lock lives on the direct URL"
    );
    let listeners = app_of(
        "SELECT application_name FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'",
    )
    .await;
    assert_eq!(
        listeners,
        vec!["bc_direct"],
        "LISTEN lives on the direct URL"
    );
    let pooled = app_of(
        "SELECT application_name FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE '%INSERT INTO backchannel.jobs%'",
    )
    .await;
    assert!(
        !pooled.is_empty() && pooled.iter().all(|a| a == "bc_pooled"),
        "{pooled:?}"
    );

    // And a waiter on this split instance is still woken by an answer elsewhere.
    let other = instance(&db).await;
    let waiting = bc.get(id, Some(20.0));
    let answer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.answer(id, json!({"result": "split"})).await
    };
    let (r, a) = tokio::join!(waiting, answer);
    assert_eq!(a.status, 200);
    assert_eq!(r.status, 200);
    assert_eq!(r.body["result"], "split");
}
