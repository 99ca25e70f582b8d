//! Answers: sealed by castellum's side for its job, opened by the scheduler's
//! kept key, and every answer the scheduler must refuse.

use zeroize::Zeroizing;

use super::*;

const ANSWER: &str = r#"{"email":"p42@example.org","marker":"ANSWER-MARKER-91c2"}"#;

/// A request sealed and opened as job `job`: the scheduler's key and
/// castellum's opened request.
fn exchange(f: &Fixture, job: i64) -> (AnswerKey, Opened) {
    let sealed = f.seal();
    let opened = opened(f.open(job, &sealed.envelope, f.now));
    (sealed.answer_key, opened)
}

fn seal(opened: &Opened, outcome: Outcome) -> Value {
    opened
        .responder
        .seal(outcome, &serde_json::from_str(ANSWER).unwrap())
        .unwrap()
}

#[test]
fn answers_round_trip_for_both_outcomes_and_hide_the_answer() {
    let f = fixture();
    let (key, opened) = exchange(&f, 10);
    for outcome in [Outcome::Done, Outcome::Failed] {
        let sealed = seal(&opened, outcome);
        assert!(!sealed.to_string().contains("ANSWER-MARKER"));
        assert_eq!(form(&sealed), Form::Sealed);
        let answer = key.open(10, outcome, &sealed).unwrap();
        assert_eq!(answer, serde_json::from_str::<Value>(ANSWER).unwrap());
    }
    // Two seals of one answer differ (rn is random).
    assert_ne!(seal(&opened, Outcome::Done), seal(&opened, Outcome::Done));
}

#[test]
fn an_answer_for_another_job_ref_or_outcome_is_refused() {
    let f = fixture();
    let (key, opened) = exchange(&f, 10);
    let done = seal(&opened, Outcome::Done);
    // Another job: the same request's answer, moved to job 11.
    assert_eq!(
        key.open(11, Outcome::Done, &done),
        Err(AnswerError::OtherJob { named: 10 })
    );
    // Another outcome: sealed as done, the job says failed (and back).
    assert_eq!(
        key.open(10, Outcome::Failed, &done),
        Err(AnswerError::OtherOutcome {
            named: Outcome::Done,
            expected: Outcome::Failed
        })
    );
    let failed = seal(&opened, Outcome::Failed);
    assert_eq!(
        key.open(10, Outcome::Done, &failed),
        Err(AnswerError::OtherOutcome {
            named: Outcome::Failed,
            expected: Outcome::Done
        })
    );
    // Another ref, under the right secret (only a forger holding the secret
    // could write it; still refused).
    let stored: Value = serde_json::from_str(&key.to_secret_text()).unwrap();
    let other_ref = Responder::new(
        b64::encode(&[9u8; 16]),
        10,
        b64::decode_exact::<32>(stored["enc"].as_str().unwrap()).unwrap(),
        Zeroizing::new(b64::decode_exact::<32>(stored["secret"].as_str().unwrap()).unwrap()),
    );
    let answer = other_ref
        .seal(Outcome::Done, &serde_json::from_str(ANSWER).unwrap())
        .unwrap();
    assert_eq!(
        key.open(10, Outcome::Done, &answer),
        Err(AnswerError::OtherRef)
    );
    // The answer to another request does not open at all.
    let (_, other) = exchange(&f, 12);
    assert_eq!(
        key.open(10, Outcome::Done, &seal(&other, Outcome::Done)),
        Err(AnswerError::Forged)
    );
}

#[test]
fn unsealed_answers_are_never_castellums_word_refusals_are_reported_as_such() {
    let f = fixture();
    let (key, _) = exchange(&f, 10);
    let plain = serde_json::from_str::<Value>(ANSWER).unwrap();
    assert_eq!(
        key.open(10, Outcome::Done, &plain),
        Err(AnswerError::NotSealed)
    );
    assert_eq!(
        key.open(10, Outcome::Failed, &plain),
        Err(AnswerError::NotSealed)
    );
    assert_eq!(
        key.open(
            10,
            Outcome::Failed,
            &json!({"message": "handler unreachable"})
        ),
        Err(AnswerError::NotSealed)
    );
    // A refusal posted by the agent (plain, failed).
    for code in RefusalCode::ALL {
        let refusal = Refusal::new(code, "why");
        assert_eq!(
            key.open(10, Outcome::Failed, &refusal.to_error()),
            Err(AnswerError::Refused(refusal.clone()))
        );
        assert_eq!(
            key.open(10, Outcome::Failed, &refusal.to_error())
                .unwrap_err()
                .code(),
            code.as_str()
        );
        // As a result (done) it is no refusal.
        assert_eq!(
            key.open(10, Outcome::Done, &refusal.to_error()),
            Err(AnswerError::NotSealed)
        );
    }
    // An unknown code, or extra members: not a refusal.
    assert_eq!(
        key.open(
            10,
            Outcome::Failed,
            &json!({"code": "seal_other", "message": "x"})
        ),
        Err(AnswerError::NotSealed)
    );
    assert_eq!(
        key.open(
            10,
            Outcome::Failed,
            &json!({"code": "seal_replay", "message": "x", "result": ANSWER})
        ),
        Err(AnswerError::NotSealed)
    );
}

#[test]
fn tampered_or_malformed_answers_are_refused() {
    let f = fixture();
    let (key, opened) = exchange(&f, 10);
    let sealed = seal(&opened, Outcome::Done);
    for name in ["h", "rn", "ct"] {
        let bytes = b64::decode(sealed[name].as_str().unwrap(), 1 << 20).unwrap();
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let mut answer = sealed.clone();
            answer[name] = json!(b64::encode(&altered));
            let error = key.open(10, Outcome::Done, &answer).unwrap_err();
            assert!(
                matches!(error, AnswerError::Forged | AnswerError::Malformed(_)),
                "{name}[{i}]: {error:?}"
            );
        }
    }
    let mut near_misses = vec![];
    let mut v = sealed.clone();
    v["sealed"] = json!("bc2");
    near_misses.push(v);
    let mut v = sealed.clone();
    v.as_object_mut().unwrap().remove("rn");
    near_misses.push(v);
    let mut v = sealed.clone();
    v["sig"] = json!("x");
    near_misses.push(v);
    let mut v = sealed.clone();
    v["rn"] = json!(b64::encode(&[1u8; 31]));
    near_misses.push(v);
    for answer in near_misses {
        assert!(
            matches!(
                key.open(10, Outcome::Done, &answer),
                Err(AnswerError::Malformed(_))
            ),
            "{answer}"
        );
    }
}

#[test]
fn the_answer_key_is_secret_text_that_round_trips_and_stays_out_of_debug() {
    let f = fixture();
    let (key, opened) = exchange(&f, 10);
    let text = key.to_secret_text();
    let stored: Value = serde_json::from_str(&text).unwrap();
    let secret = stored["secret"].as_str().unwrap().to_string();
    assert_eq!(stored["v"], 1);
    assert_eq!(stored["ref"], key.reference());
    for debug in [
        format!("{key:?}"),
        format!("{:?}", opened.responder),
        format!("{opened:?}"),
    ] {
        assert!(!debug.contains(&secret), "{debug}");
    }
    let reloaded = AnswerKey::from_secret_text(&text).unwrap();
    assert!(
        reloaded
            .open(10, Outcome::Done, &seal(&opened, Outcome::Done))
            .is_ok()
    );
    for bad in [
        "",
        "{}",
        r#"{"v":2,"ref":"AAECAwQFBgcICQoLDA0ODw","enc":"","secret":""}"#,
        &text.replace(r#""v":1"#, r#""v":1,"x":1"#),
        &text.replace(&secret, &secret[1..]),
    ] {
        assert_eq!(
            AnswerKey::from_secret_text(bad).err(),
            Some(AnswerKeyError),
            "{bad}"
        );
    }
}
