//! Sealed jobs through the real agent (`backchannel agent --open-with
//! --trust-signer`, a child process) and a local handler: round trips with
//! nothing plain in the table, every refusal (the handler never called, the
//! job failed with its code), redelivery that is no replay, key rotation and
//! the SIGHUP reload, and `backchannel submit --seal-to --sign-with`.

use std::time::Duration;

use backchannel::seal::{Algorithm, Outcome, RequestHeader, Sealer, SigningKey, unix_now};
use serde_json::{Value, json};

use crate::support::agent::*;
use crate::support::seal::*;
use crate::support::*;

/// Long enough for the agent to reconnect (the broker asks for `retry: 2000`).
const RECONNECT: Duration = Duration::from_secs(30);

fn refused(code: &str) -> String {
    format!("backchannel_agent_sealed_refused_total{{code=\"{code}\"}}")
}

/// Submit `body`, wait for its end; the job.
async fn run_job(bc: &Instance, body: Value) -> Value {
    let r = bc.submit(body, Some(30.0)).await;
    assert_eq!(r.status, 200, "the job ends within the wait: {:?}", r.body);
    r.body
}

/// Every payload, result and error of the table, as PostgreSQL stores them.
async fn stored(db: &TestDb) -> String {
    db.client()
        .await
        .query_one(
            "SELECT coalesce(string_agg(payload::text || coalesce(result::text, '') \
             || coalesce(error::text, '') || coalesce(idempotency_key, ''), ' '), '') \
             FROM backchannel.jobs",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sealed_jobs_round_trip_and_the_table_holds_no_plain_byte() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut handler = Handler::new("castellum-handler").await;
    let keys = SealKeys::new();
    let agent = AgentProcess::start(&bc, &handler.url, &keys.agent_flags()).await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());

    let payload = json!({"participant": "P-0042", "note": format!("{marker} Grüße")});
    let (body, key) = sealed(&keys.sealer(), "contact.lookup", &payload);
    let job = run_job(&bc, body).await;
    assert_eq!(job["state"], "done", "{job}");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(
        job["result"]["sealed"], "bc1",
        "the stored answer is sealed"
    );
    let answer = key.open(id, Outcome::Done, &job["result"]).expect("opens");
    assert_eq!(
        answer,
        json!({"handled": payload, "by": "castellum-handler", "job": id, "attempt": 1})
    );
    let call = handler
        .next_call(SECOND)
        .await
        .expect("the handler was called");
    assert_eq!(call.payload, payload, "the handler gets the plain payload");
    assert_eq!(call.kind, "contact.lookup");
    assert_eq!(call.reference.as_deref(), Some(key.reference()));
    assert_eq!(
        call.signer.as_deref(),
        Some(kid(&file(&keys.scheduler, "pub")).as_str())
    );

    // The handler's error answer is sealed too, as `failed`.
    let (body, key) = sealed(&keys.sealer(), "fail", &json!({"note": &marker}));
    let job = run_job(&bc, body).await;
    assert_eq!(job["state"], "failed", "{job}");
    let id = job["id"].as_i64().unwrap();
    let error = key.open(id, Outcome::Failed, &job["error"]).expect("opens");
    assert_eq!(error, json!({"status": 500, "body": {"oops": true}}));

    // Without --require-sealed a plain job is forwarded as before, without
    // the headers of a sealed one.
    let job = run_job(&bc, json!({"kind": "plain", "payload": "in clear"})).await;
    assert_eq!(job["state"], "done", "{job}");
    let calls = handler.calls();
    let plain = calls.last().unwrap();
    assert_eq!(plain.payload, "in clear");
    assert_eq!(
        (plain.reference.clone(), plain.signer.clone()),
        (None, None)
    );

    // (The plain job's answer names the handler; the sealed ones carry the
    // marker in their payload and in their answer.)
    let table = stored(&db).await;
    assert!(table.contains("bc1"), "the sealed jobs are in the table");
    for secret in [marker.as_str(), "P-0042", "Grüße", "oops"] {
        assert!(!table.contains(secret), "{secret:?} is in the table");
    }
    assert_eq!(
        agent.sample("backchannel_agent_sealed_opened_total").await,
        2.0
    );
    let log = agent.log();
    assert!(
        log.contains("sealed jobs: opening with these keys"),
        "{log}"
    );
    assert!(!log.contains(&marker), "no payload in the log");
}

#[tokio::test]
async fn each_refusal_fails_the_job_with_its_code_and_never_calls_the_handler() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let handler = Handler::new("castellum").await;
    let keys = SealKeys::new();
    let mut flags = keys.agent_flags();
    flags.push("--require-sealed".into());
    let agent = AgentProcess::start(&bc, &handler.url, &flags).await;
    let payload = json!({"participant": "P-0042"});

    // One that passes, kept for the replay below.
    let (first, _) = sealed(&keys.sealer(), "contact.lookup", &payload);
    assert_eq!(run_job(&bc, first.clone()).await["state"], "done");
    assert_eq!(handler.calls().len(), 1);

    let foreign = Sealer::new(
        SigningKey::generate().unwrap(),
        keys.sealer().recipient().clone(),
    );
    let (foreign_signer, _) = sealed(&foreign, "contact.lookup", &payload);
    let (mut relabelled, _) = sealed(&keys.sealer(), "contact.lookup", &payload);
    relabelled["kind"] = "contact.delete".into();
    let (expired, _) = sealed_at(
        &keys.sealer(),
        "contact.lookup",
        &payload,
        unix_now() - 3600,
    );
    let retired = keys.pair("retired", Algorithm::X25519);
    let (unknown_key, _) = sealed(
        &sealer(&keys.scheduler, &retired),
        "contact.lookup",
        &payload,
    );
    // The same sealed request submitted again as a new job (another key).
    let mut replayed = first.clone();
    replayed["idempotency_key"] = "a-new-job".into();
    let plain = json!({"kind": "contact.lookup", "payload": payload});
    let malformed = json!({"kind": "contact.lookup", "payload": {"sealed": "bc2"}});

    for (body, code) in [
        (foreign_signer, "seal_bad_signature"),
        (relabelled, "seal_mismatch"),
        (expired, "seal_expired"),
        (unknown_key, "seal_unknown_key"),
        (replayed, "seal_replay"),
        (plain, "seal_required"),
        (malformed, "seal_malformed"),
    ] {
        let job = run_job(&bc, body).await;
        assert_eq!(job["state"], "failed", "{code}: {job}");
        assert_eq!(job["error"]["code"], code, "{job}");
        let message = job["error"]["message"].as_str().expect("a message");
        assert!(
            !message.is_empty() && !message.contains("P-0042"),
            "{message}"
        );
        assert_eq!(
            job["error"].as_object().unwrap().len(),
            2,
            "code and message only"
        );
        assert_eq!(agent.sample(&refused(code)).await, 1.0, "{code}");
    }
    assert_eq!(
        handler.calls().len(),
        1,
        "the handler never saw a refused job"
    );
    assert_eq!(
        agent
            .sample("backchannel_agent_jobs_total{outcome=\"seal_refused\"}")
            .await,
        7.0
    );
}

#[tokio::test]
async fn a_redelivered_job_is_opened_again_and_is_no_replay() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut handler = Handler::new("castellum").await;
    let keys = SealKeys::new();
    let mut flags = keys.agent_flags();
    flags.extend(["--listener-id".into(), "sealed-agent".into()]);
    let agent = AgentProcess::start(&bc, &handler.url, &flags).await;

    let (body, key) = sealed(&keys.sealer(), "contact.lookup", &json!({"n": 1}));
    let job = run_job(&bc, body).await;
    let id = job["id"].as_i64().unwrap();
    let first = handler.next_call(SECOND).await.expect("called");

    // The job again, as if its answer had never landed: open once more, and
    // the agent's stream dropped (taken over, then let go), so that the
    // reconnected stream sends the same job id again to the same process.
    db.client()
        .await
        .execute(
            "UPDATE backchannel.jobs SET state = 'pending', result = NULL, completed_at = NULL \
             WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let mut takeover = bc
        .stream(Some("sealed-agent"))
        .await
        .expect("the same listener id takes the stream over");
    let resent = takeover
        .next_job(LONG)
        .await
        .expect("the job is sent again");
    assert_eq!(resent["id"], id);
    drop(takeover);

    let r = bc.get(id, Some(RECONNECT.as_secs_f64())).await;
    assert_eq!(r.body["state"], "done", "{:?}", r.body);
    let again = handler.next_call(SECOND).await.expect("called again");
    assert_eq!(again.job_id, id);
    assert!(again.attempt > first.attempt);
    assert_eq!(again.reference, first.reference, "the same ref: idempotent");
    let answer = key.open(id, Outcome::Done, &r.body["result"]).unwrap();
    assert_eq!(answer["attempt"], again.attempt);
    assert_eq!(agent.sample(&refused("seal_replay")).await, 0.0);
    assert_eq!(
        agent.sample("backchannel_agent_sealed_opened_total").await,
        2.0
    );
}

#[tokio::test]
async fn rotation_two_keys_open_a_retired_one_is_refused_and_sighup_reloads() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let handler = Handler::new("castellum").await;
    let keys = SealKeys::new();
    // Key a in a folder of keys, key b named on its own; c not configured.
    let folder = keys.dir.join("open-with");
    std::fs::create_dir(&folder).unwrap();
    let a = keys.pair("a", Algorithm::X25519);
    let b = keys.pair("b", Algorithm::X25519);
    let c = keys.pair("c", Algorithm::X25519);
    std::fs::rename(file(&a, "key"), folder.join("a.key")).unwrap();
    let flags: Vec<String> = vec![
        "--open-with".into(),
        folder.display().to_string(),
        "--open-with".into(),
        file(&b, "key"),
        "--trust-signer".into(),
        file(&keys.scheduler, "pub"),
    ];
    let agent = AgentProcess::start(&bc, &handler.url, &flags).await;
    let to = |recipient: &std::path::Path| {
        let (body, _) = sealed(&sealer(&keys.scheduler, recipient), "k", &json!(1));
        body
    };
    let state = |job: Value| (job["state"].clone(), job["error"]["code"].clone());
    let done = (json!("done"), Value::Null);
    let unknown = (json!("failed"), json!("seal_unknown_key"));

    assert_eq!(state(run_job(&bc, to(&a)).await), done, "sealed to a");
    assert_eq!(state(run_job(&bc, to(&b)).await), done, "sealed to b");
    assert_eq!(state(run_job(&bc, to(&c)).await), unknown, "c is not held");

    // Retire a, add c; SIGHUP.
    std::fs::remove_file(folder.join("a.key")).unwrap();
    std::fs::rename(file(&c, "key"), folder.join("c.key")).unwrap();
    agent.signal("HUP");
    let applied = "backchannel_agent_sealed_key_reloads_total{result=\"applied\"}";
    assert!(agent.sample_is(applied, 1.0, LONG).await, "{}", agent.log());
    assert_eq!(
        state(run_job(&bc, to(&c)).await),
        done,
        "c after the reload"
    );
    assert_eq!(state(run_job(&bc, to(&a)).await), unknown, "a is retired");
    assert_eq!(state(run_job(&bc, to(&b)).await), done, "b still held");

    // A broken file: the reload is refused, the keys in force stay, and the
    // log names the file, never a key's bytes.
    std::fs::write(
        folder.join("broken.key"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    agent.signal("HUP");
    let refused_reload = "backchannel_agent_sealed_key_reloads_total{result=\"refused\"}";
    assert!(agent.sample_is(refused_reload, 1.0, LONG).await);
    assert_eq!(state(run_job(&bc, to(&c)).await), done, "c still held");
    let log = agent.log();
    assert!(log.contains("broken.key"), "{log}");
    assert!(log.contains("the keys in force stay"), "{log}");
    for key in [
        folder.join("c.key"),
        std::path::PathBuf::from(file(&b, "key")),
    ] {
        let pem = std::fs::read_to_string(key).unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!log.contains(body), "key material in the log");
    }
    assert!(handler.calls().len() >= 5);
}

#[tokio::test]
async fn submit_seals_from_the_command_line_and_opens_the_answer() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let handler = Handler::new("castellum").await;
    let keys = SealKeys::new();
    let _agent = AgentProcess::start(&bc, &handler.url, &keys.agent_flags()).await;
    let marker = format!("marker-{}", uuid::Uuid::new_v4().simple());
    let payload = json!({"participant": marker});

    let submit = |signer: String| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_backchannel"));
        command
            .args(["submit", "--server", &bc.base, "--wait", "30"])
            .args(["--seal-to", &file(&keys.castellum, "pub")])
            .args(["--sign-with", &signer])
            .args(["contact.lookup", &payload.to_string()])
            .env_clear()
            .env("BACKCHANNEL_SUBMITTER_TOKEN", SUBMITTER)
            .env("RUST_LOG", "off");
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };
    let output = submit(file(&keys.scheduler, "key")).await;
    assert!(output.status.success(), "{output:?}");
    let job: Value = serde_json::from_slice(&output.stdout).expect("the job as JSON");
    assert_eq!(job["state"], "done");
    assert_eq!(job["payload"], payload, "printed opened");
    let id = job["id"].as_i64().unwrap();
    assert_eq!(
        job["result"],
        json!({"handled": payload, "by": "castellum", "job": id, "attempt": 1})
    );
    let r = bc.get(id, None).await;
    assert_eq!(r.body["payload"]["sealed"], "bc1", "stored sealed");
    assert_eq!(r.body["result"]["sealed"], "bc1");
    let key: String = db
        .client()
        .await
        .query_one(
            "SELECT idempotency_key FROM backchannel.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    let h = base64_url(r.body["payload"]["h"].as_str().unwrap());
    let header: RequestHeader = serde_json::from_slice(&h).unwrap();
    assert_eq!(key, header.reference, "ref is the idempotency key");
    assert!(!stored(&db).await.contains(&marker));

    // Signed by a key castellum does not trust: the refusal, exit 1.
    let stranger = keys.pair("stranger", Algorithm::Ed25519);
    let output = submit(file(&stranger, "key")).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let job: Value = serde_json::from_slice(&output.stdout).expect("the job as JSON");
    assert_eq!(job["error"]["code"], "seal_bad_signature");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("castellum refused it: seal_bad_signature"),
        "{stderr}"
    );
}

/// base64url without padding, decoded.
fn base64_url(text: &str) -> Vec<u8> {
    use base64ct::{Base64UrlUnpadded, Encoding};
    Base64UrlUnpadded::decode_vec(text).unwrap()
}
