//! Named channels (docs/channels.md): one cluster, several sites, one
//! stream holder each; tokens scoped to their channels; keys unique per
//! channel; the default channel's lock unchanged.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::files::TempDir;
use crate::support::*;

/// A submitter for site-a only.
const SUB_A: &str = "sub-site-a-token-0001";
/// A submitter for site-a and site-b.
const SUB_AB: &str = "sub-site-ab-token-0001";
/// Listeners of site-a and of site-b.
const LIS_A: &str = "lis-site-a-token-0001";
const LIS_B: &str = "lis-site-b-token-0001";

/// Settings with token files naming the channels (the variables' tokens,
/// SUBMITTER and LISTENER, stay the default channel's).
fn channel_settings(db: &TestDb, dir: &TempDir) -> backchannel::config::Settings {
    let mut s = settings(db);
    s.submitter_tokens_file = Some(
        dir.write(
            "submitters",
            &format!("# site tokens\n{SUB_A} site-a\n{SUB_AB} site-a,site-b\n"),
        )
        .into(),
    );
    s.listener_tokens_file = Some(
        dir.write("listeners", &format!("{LIS_A} site-a\n{LIS_B} site-b\n"))
            .into(),
    );
    s
}

fn channel_url(channel: Option<&str>, rest: &str) -> String {
    match channel {
        None => format!("/v1/{rest}"),
        Some(ch) => format!("/v1/channels/{ch}/{rest}"),
    }
}

async fn submit_on(bc: &Instance, token: &str, channel: Option<&str>, body: Value) -> Reply {
    let url = bc.url(&channel_url(channel, "jobs"));
    bc.send(bc.http.post(url).bearer_auth(token).json(&body))
        .await
}

async fn stream_on(
    bc: &Instance,
    token: &str,
    channel: Option<&str>,
    listener_id: &str,
) -> Result<Sse, Reply> {
    let request = bc
        .http
        .get(bc.url(&channel_url(channel, "stream")))
        .bearer_auth(token)
        .header("X-Listener-Id", listener_id);
    let response = request.send().await.expect("stream request");
    if response.status() != 200 {
        return Err(reply(response).await);
    }
    Ok(Sse::new(response))
}

async fn get_as(bc: &Instance, token: &str, path: &str) -> Reply {
    bc.send(bc.http.get(bc.url(path)).bearer_auth(token)).await
}

#[tokio::test]
async fn each_channel_has_its_own_stream_and_its_jobs_reach_only_it() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;

    let mut a = stream_on(&bc, LIS_A, Some("site-a"), "castellum-a")
        .await
        .expect("site-a's stream");
    let mut b = stream_on(&bc, LIS_B, Some("site-b"), "castellum-b")
        .await
        .expect("site-b's stream, while site-a's is held");
    let mut default = bc.stream(Some("castellum")).await.expect("default's too");
    // A second stream on one channel is refused, as on the default one.
    let busy = stream_on(&bc, LIS_A, Some("site-a"), "another").await.err();
    assert_eq!(
        busy.map(|r| (r.status, r.code().to_owned())),
        Some((409, "listener_busy".into()))
    );

    let r = submit_on(
        &bc,
        SUB_AB,
        Some("site-a"),
        json!({"kind": "for.a", "payload": 1}),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let for_a = r.body["id"].as_i64().unwrap();
    let job = a
        .next_job(LONG)
        .await
        .expect("site-a's job on site-a's stream");
    assert_eq!(
        (job["id"].as_i64(), job["kind"].as_str()),
        (Some(for_a), Some("for.a"))
    );

    let r = submit_on(&bc, SUB_AB, Some("site-b"), json!({"kind": "for.b"})).await;
    let for_b = r.body["id"].as_i64().unwrap();
    let job = b
        .next_job(LONG)
        .await
        .expect("site-b's job on site-b's stream");
    assert_eq!(job["id"].as_i64(), Some(for_b));

    let on_default = bc.submit_job("for.default", json!(null)).await;
    let job = default
        .next_job(LONG)
        .await
        .expect("the default channel's job");
    assert_eq!(job["id"].as_i64(), Some(on_default));

    // Nobody saw another channel's job.
    for (name, sse) in [
        ("site-a", &mut a),
        ("site-b", &mut b),
        ("default", &mut default),
    ] {
        assert!(
            sse.next_job(Duration::from_millis(700)).await.is_none(),
            "{name}'s stream got another channel's job"
        );
    }

    // Status per channel.
    let listener = get_as(&bc, SUB_AB, "/v1/channels/site-b/listener").await;
    assert_eq!(listener.status, 200);
    assert_eq!(listener.body["held"], true);
    assert_eq!(listener.body["listener_id"], "castellum-b");
    let stats = get_as(&bc, SUB_AB, "/v1/channels/site-a/stats").await;
    assert_eq!(stats.body["jobs"]["delivered"], 1, "{:?}", stats.body);
    let stats = get_as(&bc, SUBMITTER, "/v1/stats").await;
    assert_eq!(
        stats.body["jobs"]["delivered"], 1,
        "the default channel's own count"
    );
}

#[tokio::test]
async fn thirty_opens_on_two_channels_over_three_instances_give_one_holder_each() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(instance_with(channel_settings(&db, &dir)).await);
    }
    let mut opens = Vec::new();
    for i in 0..30 {
        let bc = &instances[i % 3];
        let (token, channel) = if i % 2 == 0 {
            (LIS_A, "site-a")
        } else {
            (LIS_B, "site-b")
        };
        let request = bc
            .http
            .get(bc.url(&format!("/v1/channels/{channel}/stream")))
            .bearer_auth(token)
            .header("X-Listener-Id", format!("listener-{i}"));
        opens.push(async move { (channel, request.send().await.expect("open")) });
    }
    let answers = futures_util::future::join_all(opens).await;
    let mut held = std::collections::BTreeMap::new();
    let mut kept = Vec::new();
    for (channel, response) in answers {
        match response.status().as_u16() {
            200 => {
                *held.entry(channel).or_insert(0) += 1;
                kept.push(response);
            }
            409 => {}
            other => panic!("{channel}: unexpected {other}"),
        }
    }
    assert_eq!(held.get("site-a"), Some(&1), "{held:?}");
    assert_eq!(held.get("site-b"), Some(&1), "{held:?}");
    // And PostgreSQL agrees: two stream locks, one per channel.
    let sql = db.client().await;
    let locks: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND classid = 1650655236 AND objsubid = 2
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        locks, 2,
        "one lock per named channel, keyed by the channel's id"
    );
    drop(kept);
}

#[tokio::test]
async fn a_token_finds_nothing_outside_its_channels() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;
    let r = submit_on(&bc, SUB_AB, Some("site-b"), json!({"kind": "b.secret"})).await;
    let job_b = r.body["id"].as_i64().unwrap();
    let job_default = bc.submit_job("d.secret", json!(null)).await;

    let no_channel = |r: &Reply| r.status == 404 && r.code() == "not_found";
    // A site-a submitter: site-b's routes and jobs do not exist for it.
    let r = submit_on(&bc, SUB_A, Some("site-b"), json!({"kind": "k"})).await;
    assert!(no_channel(&r), "{:?}", r.body);
    assert_eq!(r.body["error"]["message"], "no such channel");
    for path in [
        format!("/v1/jobs/{job_b}"),
        format!("/v1/jobs/{job_default}"),
        "/v1/channels/site-b/stats".to_string(),
        "/v1/channels/site-b/listener".to_string(),
        "/v1/stats".to_string(),
    ] {
        let r = get_as(&bc, SUB_A, &path).await;
        assert!(no_channel(&r), "GET {path}: {} {:?}", r.status, r.body);
    }
    let url = bc.url(&format!("/v1/jobs/{job_b}"));
    let r = bc.send(bc.http.delete(url).bearer_auth(SUB_A)).await;
    assert!(no_channel(&r), "DELETE: {:?}", r.body);
    // A default-channel token (the variables') sees no named channel.
    let r = submit_on(&bc, SUBMITTER, Some("site-a"), json!({"kind": "k"})).await;
    assert!(no_channel(&r), "{:?}", r.body);
    let r = bc.get(job_b, None).await;
    assert!(no_channel(&r), "{:?}", r.body);
    // An unknown channel and a name that is none look the same.
    for channel in ["nowhere", "Not_A_Name"] {
        let r = submit_on(&bc, SUB_AB, Some(channel), json!({"kind": "k"})).await;
        assert!(no_channel(&r), "{channel}: {:?}", r.body);
    }

    // A site-a listener: site-b's stream and jobs are not its own, nor the default's.
    let r = stream_on(&bc, LIS_A, Some("site-b"), "x")
        .await
        .err()
        .unwrap();
    assert!(no_channel(&r), "{:?}", r.body);
    let r = stream_on(&bc, LIS_A, None, "x").await.err().unwrap();
    assert!(no_channel(&r), "{:?}", r.body);
    let url = bc.url(&format!("/v1/jobs/{job_b}/result"));
    let r = bc
        .send(
            bc.http
                .post(url)
                .bearer_auth(LIS_A)
                .json(&json!({"result": "forged"})),
        )
        .await;
    assert!(no_channel(&r), "answer: {:?}", r.body);
    // A role is still a role: a submitter token cannot stream.
    let r = stream_on(&bc, SUB_AB, Some("site-b"), "x")
        .await
        .err()
        .unwrap();
    assert_eq!(r.status, 403);

    // Nothing of site-b's was touched.
    let r = get_as(&bc, SUB_AB, &format!("/v1/jobs/{job_b}")).await;
    assert_eq!((r.status, r.body["state"].as_str()), (202, Some("pending")));
    assert_eq!(db.count_jobs().await, 2, "nothing stored by the refusals");
    // Its own listener answers it.
    let url = bc.url(&format!("/v1/jobs/{job_b}/result"));
    let r = bc
        .send(
            bc.http
                .post(url)
                .bearer_auth(LIS_B)
                .json(&json!({"result": "ok"})),
        )
        .await;
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("done")));
}

#[tokio::test]
async fn one_idempotency_key_on_two_channels_is_two_jobs() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;
    let body = json!({"kind": "k", "idempotency_key": "booking-42"});
    let on_a = submit_on(&bc, SUB_AB, Some("site-a"), body.clone()).await;
    let on_b = submit_on(&bc, SUB_AB, Some("site-b"), body.clone()).await;
    let on_default = bc.submit(body.clone(), None).await;
    let ids: Vec<i64> = [&on_a, &on_b, &on_default]
        .iter()
        .map(|r| r.body["id"].as_i64().expect("a job"))
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    // A repeat on one channel answers that channel's job.
    let again = submit_on(&bc, SUB_AB, Some("site-b"), body).await;
    assert_eq!(again.body["id"].as_i64(), Some(ids[1]));
    assert_eq!(db.count_jobs().await, 3);
}

#[tokio::test]
async fn the_sql_submit_takes_a_channel_and_refuses_an_unknown_one() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;
    let mut b = stream_on(&bc, LIS_B, Some("site-b"), "castellum-b")
        .await
        .unwrap();
    let mut default = bc.stream(None).await.unwrap();
    let sql = db.client().await;
    let id: i64 = sql
        .query_one(
            "SELECT backchannel.submit('via.sql', '{\"n\": 1}', interval '1 minute', NULL, 'site-b')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let job = b.next_job(LONG).await.expect("on site-b's stream");
    assert_eq!(job["id"].as_i64(), Some(id));
    // Three and four arguments still mean the default channel (no ambiguity).
    for call in [
        "SELECT backchannel.submit('via.sql', 'null', interval '1 minute')",
        "SELECT backchannel.submit('via.sql', 'null', interval '1 minute', 'key-1')",
    ] {
        let id: i64 = sql.query_one(call, &[]).await.unwrap().get(0);
        let job = default.next_job(LONG).await.expect("on the default stream");
        assert_eq!(job["id"].as_i64(), Some(id), "{call}");
    }
    assert!(b.next_job(Duration::from_millis(500)).await.is_none());
    // A key is the channel's: the same key elsewhere is another job.
    let other: i64 = sql
        .query_one(
            "SELECT backchannel.submit('via.sql', 'null', interval '1 minute', 'key-1', 'site-b')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(other, id);
    let error = sql
        .query_one(
            "SELECT backchannel.submit('via.sql', 'null', interval '1 minute', NULL, 'nowhere')",
            &[],
        )
        .await
        .unwrap_err();
    let db_error = error.as_db_error().expect("a database error");
    assert_eq!(db_error.code().code(), "23503");
    assert!(
        db_error.message().contains("no channel named 'nowhere'"),
        "{}",
        db_error.message()
    );
}

/// Every release before channels streams under the advisory lock
/// (0x62630001, 1); the default channel keeps it, so an instance of the
/// previous release and one of this release never hold two default streams.
/// (tests/it/ops/upgrade.rs runs the previous release's own binary.)
#[tokio::test]
async fn the_default_channel_keeps_the_lock_of_every_earlier_release() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;
    let old = db.client().await;
    let taken: bool = old
        .query_one("SELECT pg_try_advisory_lock(1650655233, 1)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(taken);
    for channel in [None, Some("default")] {
        let r = stream_on(&bc, LISTENER, channel, "new").await.err();
        assert_eq!(r.map(|r| r.status), Some(409), "{channel:?}");
    }
    // Named channels are not held up by it.
    let _a = stream_on(&bc, LIS_A, Some("site-a"), "a")
        .await
        .expect("site-a");
    old.execute("SELECT pg_advisory_unlock(1650655233, 1)", &[])
        .await
        .unwrap();
    let _default = bc.stream(Some("new")).await.expect("free now");
    let taken: bool = old
        .query_one("SELECT pg_try_advisory_lock(1650655233, 1)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !taken,
        "the default stream holds the lock an earlier release takes"
    );
}

/// A backlog on one channel is never walked by another channel's claims:
/// the claim reads its own channel's rows only (a bound on work, not time).
#[tokio::test]
async fn a_backlog_on_one_channel_is_not_read_by_another_channels_claim() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;
    let sql = db.client().await;
    let ids: Vec<(String, i32)> = sql
        .query("SELECT name::text, id FROM backchannel.channels", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let id_of = |name: &str| ids.iter().find(|(n, _)| n == name).unwrap().1;
    sql.execute(
        "INSERT INTO backchannel.jobs (kind, payload, deadline, channel_id)
         SELECT 'backlog', 'null', now() + interval '10 minutes', $1
         FROM generate_series(1, 10000)",
        &[&id_of("site-a")],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE backchannel.jobs").await.unwrap();
    let r = submit_on(&bc, SUB_AB, Some("site-b"), json!({"kind": "b.one"})).await;
    let job_b = r.body["id"].as_i64().unwrap();
    // The claim as the stream's session runs it (its settings too).
    sql.batch_execute(backchannel::store::sql::stream::STREAM_SESSION_SETUP)
        .await
        .unwrap();
    let plan: String = sql
        .query_one(
            &format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) {}",
                backchannel::store::sql::stream::CLAIM_JOBS
                    .replace("$1", "7")
                    .replace("$2", "32")
                    .replace("$3", &id_of("site-b").to_string())
            ),
            &[],
        )
        .await
        .unwrap()
        .get::<_, serde_json::Value>(0)
        .to_string();
    // Every node of the plan read at most the one site-b job.
    let plan: Value = serde_json::from_str(&plan).unwrap();
    let mut worst = 0.0_f64;
    fn walk(node: &Value, worst: &mut f64) {
        if let Some(rows) = node["Actual Rows"].as_f64() {
            let removed = node["Rows Removed by Filter"].as_f64().unwrap_or(0.0);
            *worst = worst.max(rows + removed);
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, worst);
        }
        if let Some(init) = node["Plan"].as_object() {
            walk(&Value::Object(init.clone()), worst);
        }
    }
    walk(&plan[0], &mut worst);
    assert!(worst <= 1.0, "the claim read {worst} rows: {plan}");
    // And site-b's round trip goes through while the backlog stays.
    let mut b = stream_on(&bc, LIS_B, Some("site-b"), "castellum-b")
        .await
        .unwrap();
    let job = b
        .next_job(LONG)
        .await
        .expect("site-b's job despite site-a's backlog");
    assert_eq!(job["id"].as_i64(), Some(job_b));
}

#[tokio::test]
async fn a_channels_limits_refuse_its_own_requests_only() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let bc = instance_with(channel_settings(&db, &dir)).await;
    let sql = db.client().await;
    sql.execute(
        "UPDATE backchannel.channels SET max_open_jobs = 2, max_waiting = 1 WHERE name = 'site-a'",
        &[],
    )
    .await
    .unwrap();
    // Limits are read with the channels: at start, on SIGHUP.
    bc.running()
        .broker
        .ensure_channels(&[])
        .await
        .expect("channels read again");

    for _ in 0..2 {
        let r = submit_on(&bc, SUB_AB, Some("site-a"), json!({"kind": "k"})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    let full = submit_on(&bc, SUB_AB, Some("site-a"), json!({"kind": "k"})).await;
    assert_eq!(
        (full.status, full.code()),
        (429, "channel_full"),
        "{:?}",
        full.body
    );
    assert!(full.headers.contains_key("retry-after"));
    let r = submit_on(&bc, SUB_AB, Some("site-b"), json!({"kind": "k"})).await;
    assert_eq!(r.status, 202, "another channel is not full: {:?}", r.body);
    assert_eq!(
        db.count_jobs().await,
        3,
        "the refused submit stored nothing"
    );

    // One waiting request per instance on site-a; site-b's still wait.
    let first: i64 = sql
        .query_one(
            "SELECT j.id FROM backchannel.jobs j JOIN backchannel.channels c ON c.id = j.channel_id
             WHERE c.name = 'site-a' ORDER BY j.id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let waiting = bc.spawn(
        bc.http
            .get(bc.url(&format!("/v1/jobs/{first}?wait=10")))
            .bearer_auth(SUB_AB),
    );
    assert!(bc.waiting_eventually(1, LONG).await);
    let url = bc.url(&format!("/v1/jobs/{first}?wait=10"));
    let r = bc.send(bc.http.get(url).bearer_auth(SUB_AB)).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "too_many_waiting"),
        "{:?}",
        r.body
    );
    let r = bc
        .send(
            bc.http
                .post(bc.url("/v1/channels/site-b/jobs?wait=0.2"))
                .bearer_auth(SUB_AB)
                .json(&json!({"kind": "k"})),
        )
        .await;
    assert_eq!(r.status, 202, "site-b's wait is not site-a's: {:?}", r.body);
    // An ended job makes room for a new one.
    let r = bc
        .send(
            bc.http
                .delete(bc.url(&format!("/v1/jobs/{first}")))
                .bearer_auth(SUB_AB),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(waiting.await.unwrap().status, 200);
    let r = submit_on(&bc, SUB_AB, Some("site-a"), json!({"kind": "k"})).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
}

/// A site added to the token files exists after SIGHUP, on a running process.
#[tokio::test]
async fn a_channel_named_by_a_reload_is_created_and_served() {
    let db = TestDb::new().await;
    let dir = TempDir::new("channels");
    let submitters = dir.write("submitters", &format!("{SUB_A} site-a\n"));
    let broker = crate::support::procs::BrokerProcess::spawn(
        &db.url,
        &[("BACKCHANNEL_SUBMITTER_TOKENS_FILE", submitters.as_str())],
    )
    .await;
    let bc = broker.client();
    let r = submit_on(&bc, SUB_AB, Some("site-c"), json!({"kind": "k"})).await;
    assert_eq!(r.status, 401, "not a token yet: {:?}", r.body);

    dir.write(
        "submitters",
        &format!("{SUB_A} site-a\n{SUB_AB} site-a,site-c\n"),
    );
    broker.signal("HUP");
    let served = eventually(LONG, || async {
        submit_on(&bc, SUB_AB, Some("site-c"), json!({"kind": "k"}))
            .await
            .status
            == 202
    })
    .await;
    assert!(served, "site-c is served after the reload");
    let sql = db.client().await;
    let names: Vec<String> = sql
        .query(
            "SELECT name::text FROM backchannel.channels ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(names, ["default", "site-a", "site-c"]);
}
