//! The seal gate (`BACKCHANNEL_REQUIRE_SEALED`, `BACKCHANNEL_SEAL_SIGNERS`):
//! plain, foreign-signed and relabelled submits refused with nothing stored;
//! an unsealed answer to a sealed job refused; what passes.

use backchannel::seal::{
    Algorithm, Delivery, Incoming, Keyring, Opener, Outcome, RecipientKey, SignerPublic, unix_now,
};
use serde_json::json;

use crate::support::seal::*;
use crate::support::*;

/// An instance with the gate on (and `signers`, if any).
async fn gated(db: &TestDb, signers: &[String]) -> Instance {
    let mut settings = settings(db);
    settings.require_sealed = true;
    settings.seal_signers = signers.iter().map(Into::into).collect();
    instance_with(settings).await
}

/// Castellum's opener for `keys`, as the agent holds it.
fn castellum(keys: &SealKeys) -> Opener {
    let read = |ext| file(&keys.castellum, ext);
    Opener::new(Keyring::new(
        vec![RecipientKey::read(read("key").as_ref()).unwrap()],
        vec![SignerPublic::read(file(&keys.scheduler, "pub").as_ref()).unwrap()],
    ))
}

#[tokio::test]
async fn the_gate_refuses_plain_foreign_and_relabelled_submits_storing_nothing() {
    let db = TestDb::new().await;
    let keys = SealKeys::new();
    let bc = gated(&db, &[file(&keys.scheduler, "pub")]).await;
    let payload = json!({"participant": "P-0042"});

    let stranger = keys.pair("stranger", Algorithm::Ed25519);
    let (foreign, _) = sealed(&sealer(&stranger, &keys.castellum), "lookup", &payload);
    let (mut relabelled, _) = sealed(&keys.sealer(), "lookup", &payload);
    relabelled["kind"] = "delete".into();
    let (mut truncated, _) = sealed(&keys.sealer(), "lookup", &payload);
    truncated["payload"].as_object_mut().unwrap().remove("sig");
    for (body, status, code) in [
        (
            json!({"kind": "lookup", "payload": payload}),
            400,
            "not_sealed",
        ),
        (json!({"kind": "lookup"}), 400, "not_sealed"),
        (
            json!({"kind": "lookup", "payload": {"sealed": "bc2"}}),
            400,
            "not_sealed",
        ),
        (truncated, 400, "not_sealed"),
        (foreign, 403, "seal_bad_signature"),
        (relabelled, 400, "seal_mismatch"),
    ] {
        let r = bc.submit(body, None).await;
        assert_eq!((r.status, r.code()), (status, code), "{:?}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(!message.contains("P-0042"), "{message}");
    }
    assert_eq!(db.count_jobs().await, 0, "nothing stored");

    let (body, _) = sealed(&keys.sealer(), "lookup", &payload);
    let r = bc.submit(body, None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(db.count_jobs().await, 1);
}

#[tokio::test]
async fn without_signers_the_gate_checks_form_and_kind_only() {
    let db = TestDb::new().await;
    let keys = SealKeys::new();
    let bc = gated(&db, &[]).await;
    let stranger = keys.pair("stranger", Algorithm::Ed25519);
    let (foreign, _) = sealed(&sealer(&stranger, &keys.castellum), "lookup", &json!(1));
    assert_eq!(bc.submit(foreign, None).await.status, 202);
    let (mut relabelled, _) = sealed(&keys.sealer(), "lookup", &json!(1));
    relabelled["kind"] = "delete".into();
    assert_eq!(bc.submit(relabelled, None).await.code(), "seal_mismatch");
    let r = bc
        .submit(json!({"kind": "lookup", "payload": 1}), None)
        .await;
    assert_eq!(r.code(), "not_sealed");
    assert_eq!(db.count_jobs().await, 1);
}

#[tokio::test]
async fn an_answer_to_a_sealed_job_is_sealed_or_a_refusal() {
    let db = TestDb::new().await;
    let keys = SealKeys::new();
    let bc = gated(&db, &[file(&keys.scheduler, "pub")]).await;
    let opener = castellum(&keys);
    let submit = |kind: &'static str| {
        let (body, key) = sealed(&keys.sealer(), kind, &json!({"n": 1}));
        let bc = &bc;
        async move {
            let r = bc.submit(body, None).await;
            assert_eq!(r.status, 202, "{:?}", r.body);
            (
                r.body["id"].as_i64().unwrap(),
                r.body["payload"].clone(),
                key,
            )
        }
    };
    let (id, payload, key) = submit("lookup").await;

    // Plain answers, whatever they look like, are refused; the job stays open.
    for body in [
        json!({"result": {"email": "p42@example.org"}}),
        json!({"result": null}),
        json!({"error": {"message": "unreachable"}}),
        json!({"error": {"code": "seal_made_up", "message": "x"}}),
        json!({"result": {"code": "seal_expired", "message": "a refusal is an error"}}),
    ] {
        let r = bc.answer(id, body.clone()).await;
        assert_eq!((r.status, r.code()), (400, "not_sealed"), "{body}");
    }
    assert_eq!(bc.get(id, None).await.body["state"], "pending");

    // Castellum's sealed answer, but naming another job or outcome.
    let opened = match opener
        .open(
            Delivery {
                id,
                kind: "lookup",
                payload: &payload.to_string(),
            },
            unix_now(),
        )
        .expect("opens")
    {
        Incoming::Sealed(opened) => opened,
        Incoming::Plain => panic!("sealed"),
    };
    let done = opened.responder.seal(Outcome::Done, &json!("ok")).unwrap();
    let r = bc.answer(id, json!({"error": done})).await;
    assert_eq!(r.code(), "not_sealed", "a done answer posted as an error");
    let (other, _, _) = submit("lookup").await;
    let r = bc.answer(other, json!({"result": done})).await;
    assert_eq!(r.code(), "not_sealed", "the answer of another job");

    // The sealed answer passes, and opens at the scheduler.
    let r = bc.answer(id, json!({"result": done})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        key.open(id, Outcome::Done, &r.body["result"]).unwrap(),
        "ok"
    );

    // A plain seal_* refusal passes as the job's error.
    let refusal = json!({"code": "seal_expired", "message": "the request expired"});
    let r = bc.answer(other, json!({"error": refusal})).await;
    assert_eq!((r.status, &r.body["state"]), (200, &json!("failed")));

    // A job stored plain (through SQL, past the gate) takes a plain answer.
    let plain: i64 = db
        .client()
        .await
        .query_one(
            "SELECT backchannel.submit('plain', '1'::jsonb, '30 seconds')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let r = bc.answer(plain, json!({"result": 2})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // An unknown job is still 404.
    assert_eq!(bc.answer(999_999, json!({"result": 1})).await.status, 404);
}

#[tokio::test]
async fn the_gates_settings_are_checked_at_start_and_its_signers_reload() {
    let db = TestDb::new().await;
    let keys = SealKeys::new();

    let mut s = settings(&db);
    s.seal_signers = vec![file(&keys.scheduler, "pub").into()];
    let message = refused(s).await;
    assert!(
        message.contains("BACKCHANNEL_SEAL_SIGNERS needs BACKCHANNEL_REQUIRE_SEALED"),
        "{message}"
    );
    let mut s = settings(&db);
    s.require_sealed = true;
    s.seal_signers = vec![file(&keys.castellum, "pub").into()];
    let message = refused(s).await;
    assert!(message.contains("BACKCHANNEL_SEAL_SIGNERS"), "{message}");
    assert!(message.contains("castellum.pub"), "{message}");
    assert!(message.contains("X25519"), "names what is wrong: {message}");

    // The file's key is replaced by another signer's: read on reload.
    let trusted = keys.dir.join("trusted.pub");
    std::fs::copy(file(&keys.scheduler, "pub"), &trusted).unwrap();
    let bc = gated(&db, &[trusted.display().to_string()]).await;
    let next = keys.pair("next", Algorithm::Ed25519);
    let (body, _) = sealed(&sealer(&next, &keys.castellum), "k", &json!(1));
    assert_eq!(
        bc.submit(body.clone(), None).await.code(),
        "seal_bad_signature"
    );
    std::fs::copy(file(&next, "pub"), &trusted).unwrap();
    bc.running().broker.reload_seal_signers().unwrap();
    assert_eq!(bc.submit(body, None).await.status, 202);
    std::fs::write(&trusted, "not a key").unwrap();
    assert!(bc.running().broker.reload_seal_signers().is_err());
    let (body, _) = sealed(&sealer(&next, &keys.castellum), "k", &json!(2));
    assert_eq!(
        bc.submit(body, None).await.status,
        202,
        "the signers in force stay"
    );
}
