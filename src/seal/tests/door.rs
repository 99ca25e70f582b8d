//! The broker's door: public keys only, form, signature and kind.

use super::*;

#[test]
fn the_door_refuses_plain_malformed_foreign_and_relabelled_submits() {
    let f = fixture();
    let door = Door::new(vec![f.signer.clone()]);
    assert!(door.checks_signatures());
    let sealed = f.seal();

    let header = door
        .check_request("default", KIND, &sealed.envelope)
        .unwrap();
    assert_eq!(header.reference, sealed.reference);
    // Misrouted: submitted on another channel than the one it was sealed for.
    let misrouted = door.check_request("site-b", KIND, &sealed.envelope);
    assert_eq!(misrouted.unwrap_err().code, DoorCode::Mismatch);

    let refused = |kind: &str, payload: &Value| {
        door.check_request("default", kind, payload)
            .unwrap_err()
            .code
    };
    assert_eq!(refused(KIND, &json!({"a": 1})), DoorCode::NotSealed);
    let mut near_miss = sealed.envelope.clone();
    near_miss["sealed"] = json!("bc2");
    assert_eq!(refused(KIND, &near_miss), DoorCode::NotSealed);
    // Relabelled: the job's kind is not the sealed one.
    assert_eq!(
        refused("another.kind", &sealed.envelope),
        DoorCode::Mismatch
    );
    // Foreign signer.
    let foreign = fixture();
    let foreign_sealed = Sealer::new(
        SigningKey::from_pem(&foreign.sealer.signer().to_pem()).unwrap(),
        f.recipient.clone(),
    )
    .seal_text(KIND, PAYLOAD, std::time::Duration::from_secs(60), f.now)
    .unwrap();
    assert_eq!(
        refused(KIND, &foreign_sealed.envelope),
        DoorCode::BadSignature
    );
    // A flipped signature, relabelled too: the signature comes first.
    let mut parts = Parts::of(&sealed.envelope);
    parts.sig[3] ^= 4;
    assert_eq!(
        refused("another.kind", &parts.to_value()),
        DoorCode::BadSignature
    );

    assert_eq!(DoorCode::NotSealed.status(), 400);
    assert_eq!(DoorCode::Mismatch.status(), 400);
    assert_eq!(DoorCode::BadSignature.status(), 403);
    assert_eq!(DoorCode::BadSignature.as_str(), "seal_bad_signature");

    // Without signers: form and kind only.
    let open_door = Door::default();
    assert!(!open_door.checks_signatures());
    assert!(
        open_door
            .check_request("default", KIND, &foreign_sealed.envelope)
            .is_ok()
    );
    assert_eq!(
        open_door
            .check_request("default", "another.kind", &foreign_sealed.envelope)
            .unwrap_err()
            .code,
        DoorCode::Mismatch
    );
}

#[test]
fn the_door_lets_through_sealed_answers_and_refusals_only() {
    let f = fixture();
    let door = Door::default();
    let sealed = f.seal();
    let opened = opened(f.open(5, &sealed.envelope, f.now));
    let done = opened
        .responder
        .seal(Outcome::Done, &json!({"x": 1}))
        .unwrap();
    let failed = opened
        .responder
        .seal(Outcome::Failed, &json!({"x": 1}))
        .unwrap();
    assert_eq!(door.check_answer(5, Outcome::Done, &done), Ok(()));
    assert_eq!(door.check_answer(5, Outcome::Failed, &failed), Ok(()));
    let refusal = Refusal::new(RefusalCode::Replay, "seen").to_error();
    assert_eq!(door.check_answer(5, Outcome::Failed, &refusal), Ok(()));

    let no =
        |job, outcome, answer: &Value| door.check_answer(job, outcome, answer).unwrap_err().code;
    assert_eq!(no(5, Outcome::Done, &json!({"x": 1})), DoorCode::NotSealed);
    assert_eq!(
        no(5, Outcome::Failed, &json!({"message": "x"})),
        DoorCode::NotSealed
    );
    assert_eq!(no(5, Outcome::Done, &refusal), DoorCode::NotSealed);
    assert_eq!(no(6, Outcome::Done, &done), DoorCode::NotSealed);
    assert_eq!(no(5, Outcome::Failed, &done), DoorCode::NotSealed);
    let mut broken = done.clone();
    broken["rn"] = json!("AA");
    assert_eq!(no(5, Outcome::Done, &broken), DoorCode::NotSealed);
}
