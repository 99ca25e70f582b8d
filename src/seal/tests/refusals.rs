//! Every refusal code, the order of the checks (a request that fails two
//! checks gets the first one's code), tampering, and what a refusal says.

use super::*;

fn header_bytes(header: &RequestHeader) -> Vec<u8> {
    header.to_bytes()
}

#[test]
fn a_fresh_request_opens_and_plain_payloads_pass_unless_sealing_is_required() {
    let f = fixture();
    let sealed = f.seal();
    let opened = opened(f.open(1, &sealed.envelope, f.now));
    assert_eq!(opened.payload.get(), PAYLOAD);
    assert_eq!(opened.header.reference, sealed.reference);
    assert_eq!(opened.header.skid, f.signer.kid().as_str());
    assert_eq!(opened.header.rkid, f.recipient.kid().as_str());

    for plain in [
        json!({"a": 1}),
        json!([1, 2]),
        json!("sealed"),
        json!(null),
        json!({"Sealed": "bc1"}),
    ] {
        assert!(
            matches!(f.open(2, &plain, f.now), Ok(Incoming::Plain)),
            "{plain}"
        );
    }
    let strict = Opener::new(Keyring::default()).require_sealed(true);
    for plain in [json!({"a": 1}), json!([1, 2]), json!(null)] {
        let text = plain.to_string();
        let refusal = strict
            .open(
                Delivery {
                    id: 3,
                    kind: KIND,
                    payload: &text,
                },
                0,
            )
            .unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Required);
        assert_eq!(refusal.to_error()["code"], "seal_required");
    }
    // Text that is not JSON at all is not sealed either.
    let refusal = strict
        .open(
            Delivery {
                id: 3,
                kind: KIND,
                payload: "{not json",
            },
            0,
        )
        .unwrap_err();
    assert_eq!(refusal.code, RefusalCode::Required);
}

#[test]
fn near_misses_and_broken_envelopes_are_malformed_never_plain() {
    let f = fixture();
    let good = f.seal().envelope;
    let mut cases: Vec<(&str, Value)> = vec![];
    let with = |name: &str, value: Value| {
        let mut v = good.clone();
        v[name] = value;
        v
    };
    let without = |name: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(name);
        v
    };
    cases.push(("another version", with("sealed", json!("bc2"))));
    cases.push(("sealed true", with("sealed", json!(true))));
    cases.push(("sealed null", with("sealed", json!(null))));
    cases.push(("sealed alone", json!({"sealed": "bc1"})));
    cases.push(("no sig", without("sig")));
    cases.push(("no ct", without("ct")));
    cases.push(("an extra member", with("extra", json!("x"))));
    cases.push(("a number for enc", with("enc", json!(5))));
    cases.push((
        "h padded",
        with("h", json!(format!("{}=", good["h"].as_str().unwrap()))),
    ));
    cases.push((
        "enc padded",
        with("enc", json!(format!("{}=", good["enc"].as_str().unwrap()))),
    ));
    // A character of the standard alphabet, whatever the key drew ('+' and
    // '/' are never base64url).
    for standard in ["+", "/"] {
        let enc = good["enc"].as_str().unwrap();
        cases.push((
            "enc with a standard base64 character",
            with("enc", json!(format!("{standard}{}", &enc[1..]))),
        ));
    }
    cases.push((
        "enc of 31 bytes",
        with("enc", json!(b64::encode(&[7u8; 31]))),
    ));
    cases.push((
        "enc of 33 bytes",
        with("enc", json!(b64::encode(&[7u8; 33]))),
    ));
    cases.push((
        "sig of 63 bytes",
        with("sig", json!(b64::encode(&[7u8; 63]))),
    ));
    cases.push((
        "sig of 65 bytes",
        with("sig", json!(b64::encode(&[7u8; 65]))),
    ));
    cases.push((
        "ct with a space",
        with("ct", json!(format!("{} ", good["ct"].as_str().unwrap()))),
    ));
    for (what, envelope) in cases {
        let refusal = f.open(1, &envelope, f.now).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Malformed, "{what}: {refusal}");
    }
}

#[test]
fn headers_are_parsed_strictly_even_when_correctly_signed() {
    let f = fixture();
    let signer = f.sealer.signer();
    let good = String::from_utf8(header_bytes(&f.header())).unwrap();
    let replace = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replacen(from, to, 1)
    };
    let cases: Vec<(&str, String)> = vec![
        ("v 2", replace(r#""v":1"#, r#""v":2"#)),
        ("v 1.0", replace(r#""v":1"#, r#""v":1.0"#)),
        ("v \"1\"", replace(r#""v":1"#, r#""v":"1""#)),
        ("another suite", replace("ChaCha20Poly1305", "AES128GCM")),
        ("an unknown member", replace(r#"{"v":1"#, r#"{"v":1,"x":0"#)),
        (
            "a duplicate member",
            replace(r#"{"v":1"#, r#"{"v":1,"v":1"#),
        ),
        ("a missing member", replace(r#""ch":"default","#, "")),
        ("iat negative", replace(r#""iat":"#, r#""iat":-"#)),
        ("exp before iat", {
            let mut h = f.header();
            h.exp = h.iat - 1;
            String::from_utf8(header_bytes(&h)).unwrap()
        }),
        ("a short ref", {
            let mut h = f.header();
            h.reference = b64::encode(&[1u8; 15]);
            String::from_utf8(header_bytes(&h)).unwrap()
        }),
        ("a kid that is no kid", {
            let mut h = f.header();
            h.rkid = "not-a-key-id".into();
            String::from_utf8(header_bytes(&h)).unwrap()
        }),
        ("an empty kind", {
            let mut h = f.header();
            h.kind = String::new();
            String::from_utf8(header_bytes(&h)).unwrap()
        }),
        (
            "an array",
            r#"[1,"X25519-SHA256-ChaCha20Poly1305"]"#.to_string(),
        ),
        ("not JSON", "{".to_string()),
        ("trailing bytes", format!("{good} x")),
        ("over 1024 bytes", {
            let mut h = f.header();
            h.ch = "c".repeat(1024);
            String::from_utf8(header_bytes(&h)).unwrap()
        }),
    ];
    for (what, h) in cases {
        let envelope = seal_raw(h.as_bytes(), PAYLOAD.as_bytes(), &f.recipient, signer).to_value();
        let refusal = f.open(1, &envelope, f.now).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Malformed, "{what}: {refusal}");
    }
    // Not UTF-8.
    let mut bytes = good.clone().into_bytes();
    bytes[10] = 0xff;
    let envelope = seal_raw(&bytes, PAYLOAD.as_bytes(), &f.recipient, signer).to_value();
    assert_eq!(
        code(f.open(1, &envelope, f.now)),
        Some(RefusalCode::Malformed)
    );

    // Whitespace in the header is another implementation's right: it opens.
    let spaced = good.replace(r#"","#, r#"", "#).replace(r#"":"#, r#"": "#);
    assert_ne!(spaced, good);
    let envelope = seal_raw(spaced.as_bytes(), PAYLOAD.as_bytes(), &f.recipient, signer).to_value();
    assert_eq!(code(f.open(1, &envelope, f.now)), None);
    // And exactly 1024 bytes is allowed (a long channel fills it).
    let mut h = f.header();
    h.ch = String::new();
    let channel = "c".repeat(1024 - header_bytes(&h).len());
    let f = fixture_with(|opener| opener.with_channel(channel.clone()));
    let mut h = f.header();
    h.ch = channel;
    let bytes = header_bytes(&h);
    assert_eq!(bytes.len(), 1024);
    let envelope = seal_raw(&bytes, PAYLOAD.as_bytes(), &f.recipient, f.sealer.signer()).to_value();
    assert_eq!(code(f.open(1, &envelope, f.now)), None);
}

#[test]
fn bad_signatures_unknown_signers_and_foreign_signers() {
    let f = fixture();
    let sealed = f.seal();
    // A flipped signature bit.
    let mut parts = Parts::of(&sealed.envelope);
    parts.sig[10] ^= 1;
    assert_eq!(
        code(f.open(1, &parts.to_value(), f.now)),
        Some(RefusalCode::BadSignature)
    );
    // Signed by a key the agent does not trust, naming itself.
    let foreign = fixture();
    let foreign_sealer = Sealer::new(
        SigningKey::from_pem(&foreign.sealer.signer().to_pem()).unwrap(),
        f.recipient.clone(),
    );
    let envelope = foreign_sealer
        .seal_text(KIND, PAYLOAD, std::time::Duration::from_secs(300), f.now)
        .unwrap()
        .envelope;
    let refusal = f.open(1, &envelope, f.now).unwrap_err();
    assert_eq!(refusal.code, RefusalCode::BadSignature);
    assert!(
        refusal.message.contains(foreign.signer.kid().as_str()),
        "{refusal}"
    );
    // Signed by a foreign key but naming the trusted signer's kid.
    let mut h = f.header();
    h.skid = f.signer.kid().to_string();
    let parts = seal_raw(
        &header_bytes(&h),
        PAYLOAD.as_bytes(),
        &f.recipient,
        foreign.sealer.signer(),
    );
    assert_eq!(
        code(f.open(1, &parts.to_value(), f.now)),
        Some(RefusalCode::BadSignature)
    );
    // The same request under a trusted signer after a reload that drops it.
    let sealed = f.seal();
    f.opener.reload(Keyring::new(
        vec![RecipientKey::from_pem(&f.opener.keys().recipients()[0].to_pem()).unwrap()],
        vec![foreign.signer.clone()],
    ));
    assert_eq!(
        code(f.open(1, &sealed.envelope, f.now)),
        Some(RefusalCode::BadSignature)
    );
}

#[test]
fn checks_run_in_sealed_md_order_the_first_failure_is_the_code() {
    let f = fixture();
    let signer = f.sealer.signer();
    let stranger = RecipientKey::generate().unwrap();
    let expired_now = f.now + 300 + 61;

    // Malformed AND bad signature AND unknown key: malformed.
    let mut h = f.header();
    h.rkid = stranger.kid().to_string();
    let mut parts = seal_raw(
        &header_bytes(&h),
        PAYLOAD.as_bytes(),
        stranger.public(),
        signer,
    );
    parts.sig[0] ^= 1;
    let mut envelope = parts.to_value();
    envelope["extra"] = json!("x");
    assert_eq!(
        code(f.open(1, &envelope, expired_now)),
        Some(RefusalCode::Malformed)
    );

    // Bad signature AND mismatch AND expired AND unknown key: bad signature.
    let mut h = f.header();
    h.rkid = stranger.kid().to_string();
    h.kind = "another.kind".into();
    let mut parts = seal_raw(
        &header_bytes(&h),
        PAYLOAD.as_bytes(),
        stranger.public(),
        signer,
    );
    parts.sig[0] ^= 1;
    assert_eq!(
        code(f.open(1, &parts.to_value(), expired_now)),
        Some(RefusalCode::BadSignature)
    );
    // Bad signature AND unknown key (the brief's example): bad signature.
    let mut h = f.header();
    h.rkid = stranger.kid().to_string();
    let mut parts = seal_raw(
        &header_bytes(&h),
        PAYLOAD.as_bytes(),
        stranger.public(),
        signer,
    );
    parts.sig[5] ^= 0x80;
    assert_eq!(
        code(f.open(1, &parts.to_value(), f.now)),
        Some(RefusalCode::BadSignature)
    );

    // Mismatch (kind) AND expired AND unknown key: mismatch.
    let mut h = f.header();
    h.rkid = stranger.kid().to_string();
    let parts = seal_raw(
        &header_bytes(&h),
        PAYLOAD.as_bytes(),
        stranger.public(),
        signer,
    );
    assert_eq!(
        code(f.open_as(1, "relabelled.kind", &parts.to_value(), expired_now)),
        Some(RefusalCode::Mismatch)
    );
    // Mismatch (channel): the header names another channel.
    let mut h = f.header();
    h.ch = "elsewhere".into();
    let parts = seal_raw(&header_bytes(&h), PAYLOAD.as_bytes(), &f.recipient, signer);
    assert_eq!(
        code(f.open(1, &parts.to_value(), f.now)),
        Some(RefusalCode::Mismatch)
    );

    // Expired AND unknown key: expired.
    assert_eq!(
        code(f.open(1, &parts_for(&f, &stranger).to_value(), expired_now)),
        Some(RefusalCode::Expired)
    );
    // Unknown key alone.
    assert_eq!(
        code(f.open(1, &parts_for(&f, &stranger).to_value(), f.now)),
        Some(RefusalCode::UnknownKey)
    );

    // Unknown key AND replay: unknown key (a request to a key not held here
    // is never recorded, so it is refused the same way under any job).
    let unknown = parts_for(&f, &stranger).to_value();
    assert_eq!(
        code(f.open(1, &unknown, f.now)),
        Some(RefusalCode::UnknownKey)
    );
    assert_eq!(
        code(f.open(2, &unknown, f.now)),
        Some(RefusalCode::UnknownKey)
    );

    // Replay AND HPKE failure: replay. A correctly signed request whose
    // ciphertext does not open: malformed for its own job, replay under
    // another job (the replay check comes first, and recorded it).
    let mut parts = seal_raw(
        &header_bytes(&f.header()),
        PAYLOAD.as_bytes(),
        &f.recipient,
        signer,
    );
    parts.ct[0] ^= 1;
    let broken = parts.sign(signer).to_value();
    assert_eq!(
        code(f.open(1, &broken, f.now)),
        Some(RefusalCode::Malformed)
    );
    assert_eq!(
        code(f.open(1, &broken, f.now)),
        Some(RefusalCode::Malformed)
    );
    assert_eq!(code(f.open(2, &broken, f.now)), Some(RefusalCode::Replay));
}

/// A correctly signed request to `stranger`'s key.
fn parts_for(f: &Fixture, stranger: &RecipientKey) -> Parts {
    let mut h = f.header();
    h.rkid = stranger.kid().to_string();
    seal_raw(
        &header_bytes(&h),
        PAYLOAD.as_bytes(),
        stranger.public(),
        f.sealer.signer(),
    )
}

#[test]
fn hpke_failures_and_a_payload_that_is_not_json_are_malformed() {
    let f = fixture();
    let signer = f.sealer.signer();
    // Sealed to another key but naming ours.
    let stranger = RecipientKey::generate().unwrap();
    let parts = seal_raw(
        &header_bytes(&f.header()),
        PAYLOAD.as_bytes(),
        stranger.public(),
        signer,
    );
    let refusal = f.open(1, &parts.to_value(), f.now).unwrap_err();
    assert_eq!(refusal.code, RefusalCode::Malformed);
    // An empty ciphertext, signed.
    let mut parts = seal_raw(
        &header_bytes(&f.header()),
        PAYLOAD.as_bytes(),
        &f.recipient,
        signer,
    );
    parts.ct.clear();
    assert_eq!(
        code(f.open(1, &parts.sign(signer).to_value(), f.now)),
        Some(RefusalCode::Malformed)
    );
    // A low-order enc (all zeros), signed.
    let mut parts = seal_raw(
        &header_bytes(&f.header()),
        PAYLOAD.as_bytes(),
        &f.recipient,
        signer,
    );
    parts.enc = vec![0; 32];
    assert_eq!(
        code(f.open(1, &parts.sign(signer).to_value(), f.now)),
        Some(RefusalCode::Malformed)
    );
    // The plaintext is not JSON.
    let parts = seal_raw(
        &header_bytes(&f.header()),
        b"not json",
        &f.recipient,
        signer,
    );
    assert_eq!(
        code(f.open(1, &parts.to_value(), f.now)),
        Some(RefusalCode::Malformed)
    );
}

#[test]
fn replay_under_another_job_is_refused_redelivery_of_the_same_job_is_not() {
    let f = fixture();
    let sealed = f.seal();
    assert_eq!(code(f.open(41, &sealed.envelope, f.now)), None);
    // Redelivery (the stream sends job 41 again), later on.
    assert_eq!(code(f.open(41, &sealed.envelope, f.now + 100)), None);
    // The same sealed request submitted again as a new job.
    let refusal = f.open(42, &sealed.envelope, f.now + 100).unwrap_err();
    assert_eq!(refusal.code, RefusalCode::Replay);
    assert!(refusal.message.contains("41"), "{refusal}");
    // Job 41 still opens.
    assert_eq!(code(f.open(41, &sealed.envelope, f.now + 200)), None);
    // A key reload keeps the cache.
    f.reload_same_keys();
    assert_eq!(
        code(f.open(42, &sealed.envelope, f.now + 200)),
        Some(RefusalCode::Replay)
    );
    assert_eq!(code(f.open(41, &sealed.envelope, f.now + 200)), None);
}

#[test]
fn a_full_replay_cache_refuses_new_requests_rather_than_forget() {
    let f = fixture_with(|opener| opener.with_replay_capacity(2));
    let (a, b, c) = (f.seal(), f.seal(), f.seal());
    assert_eq!(code(f.open(1, &a.envelope, f.now)), None);
    assert_eq!(code(f.open(2, &b.envelope, f.now)), None);
    let refusal = f.open(3, &c.envelope, f.now).unwrap_err();
    assert_eq!(refusal.code, RefusalCode::Replay);
    assert!(refusal.message.contains("full"), "{refusal}");
    // The live entries still catch their replays.
    assert_eq!(
        code(f.open(9, &a.envelope, f.now)),
        Some(RefusalCode::Replay)
    );
    // Redelivery of a recorded job still passes.
    assert_eq!(code(f.open(1, &a.envelope, f.now)), None);
}

#[test]
fn tampering_with_any_byte_is_refused_never_opened() {
    let f = fixture_with(|opener| opener.require_sealed(true));
    let sealed = f.seal();
    let parts = Parts::of(&sealed.envelope);
    let mut tried = 0;
    for field in ["h", "enc", "ct", "sig"] {
        let length = match field {
            "h" => parts.h.len(),
            "enc" => parts.enc.len(),
            "ct" => parts.ct.len(),
            _ => parts.sig.len(),
        };
        for i in 0..length {
            for bit in [0x01u8, 0x80] {
                let mut p = Parts::of(&sealed.envelope);
                let bytes = match field {
                    "h" => &mut p.h,
                    "enc" => &mut p.enc,
                    "ct" => &mut p.ct,
                    _ => &mut p.sig,
                };
                bytes[i] ^= bit;
                let result = f.open(7, &p.to_value(), f.now);
                let c = code(result);
                assert!(
                    matches!(c, Some(RefusalCode::BadSignature | RefusalCode::Malformed)),
                    "{field}[{i}] ^ {bit:#x}: {c:?}"
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 500, "{tried}");

    // Every character of the envelope's text, replaced: refused by an agent
    // that requires sealing (a broken member name may make it plain).
    let text = sealed.envelope.to_string();
    for (i, ch) in text.char_indices() {
        let replacement = if ch == 'A' { 'B' } else { 'A' };
        let mut altered = text.clone();
        altered.replace_range(i..i + ch.len_utf8(), &replacement.to_string());
        let result = f.opener.open(
            Delivery {
                id: 8,
                kind: KIND,
                payload: &altered,
            },
            f.now,
        );
        assert!(result.is_err(), "character {i} replaced still opened");
    }
    // The untouched request still opens (nothing above recorded job 7 or 8
    // for it: every altered copy failed before the replay check).
    assert_eq!(code(f.open(7, &sealed.envelope, f.now)), None);
}

#[test]
fn refusals_say_what_failed_without_key_material_or_plaintext() {
    let f = fixture();
    let private_pem = f.opener.keys().recipients()[0].to_pem();
    let signing_pem = f.sealer.signer().to_pem();
    let secret_bits: Vec<String> = [private_pem.as_str(), signing_pem.as_str()]
        .iter()
        .flat_map(|pem| {
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let stranger = RecipientKey::generate().unwrap();
    let mut refusals = vec![];
    let sealed = f.seal();
    refusals.push(f.open(1, &sealed.envelope, f.now + 1000).unwrap_err());
    refusals.push(f.open_as(1, "other", &sealed.envelope, f.now).unwrap_err());
    refusals.push(
        f.open(1, &parts_for(&f, &stranger).to_value(), f.now)
            .unwrap_err(),
    );
    let mut p = Parts::of(&sealed.envelope);
    p.sig[1] ^= 1;
    refusals.push(f.open(1, &p.to_value(), f.now).unwrap_err());
    let mut p = Parts::of(&sealed.envelope);
    p.ct[1] ^= 1;
    refusals.push(
        f.open(1, &p.sign(f.sealer.signer()).to_value(), f.now)
            .unwrap_err(),
    );
    // (The altered copy above passed the replay check as job 1, so the
    // original is job 1's redelivery, and a replay as job 3.)
    f.open(1, &sealed.envelope, f.now).unwrap();
    refusals.push(f.open(3, &sealed.envelope, f.now).unwrap_err());
    let codes: Vec<_> = refusals.iter().map(|r| r.code).collect();
    assert_eq!(
        codes,
        [
            RefusalCode::Expired,
            RefusalCode::Mismatch,
            RefusalCode::UnknownKey,
            RefusalCode::BadSignature,
            RefusalCode::Malformed,
            RefusalCode::Replay,
        ]
    );
    for refusal in &refusals {
        let posted = refusal.to_error().to_string();
        assert!(!posted.contains("PLAINTEXT-MARKER"), "{posted}");
        assert!(!posted.contains("P-0042"), "{posted}");
        for bit in &secret_bits {
            assert!(!posted.contains(bit.as_str()), "{posted}");
        }
        assert!(!refusal.message.is_empty());
        assert_eq!(
            Refusal::from_error(&refusal.to_error()).as_ref(),
            Some(refusal)
        );
    }
    // Every code has its SEALED.md name.
    let names: Vec<_> = RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "seal_malformed",
            "seal_bad_signature",
            "seal_mismatch",
            "seal_expired",
            "seal_unknown_key",
            "seal_replay",
            "seal_required"
        ]
    );
}

#[test]
fn key_rotation_two_recipient_keys_open_a_retired_one_is_unknown() {
    let old = RecipientKey::generate().unwrap();
    let new = RecipientKey::generate().unwrap();
    let signing = SigningKey::generate().unwrap();
    let signer = signing.public().clone();
    let signing_pem = signing.to_pem();
    let to_old = Sealer::new(signing, old.public().clone());
    let to_new = Sealer::new(
        SigningKey::from_pem(&signing_pem).unwrap(),
        new.public().clone(),
    );
    let opener = Opener::new(Keyring::new(vec![old, new], vec![signer.clone()]));
    let now = 1_796_000_000;
    let seal = |s: &Sealer| {
        s.seal(
            KIND,
            &json!({"n": 1}),
            std::time::Duration::from_secs(60),
            now,
        )
        .unwrap()
        .envelope
        .to_string()
    };
    let (a, b) = (seal(&to_old), seal(&to_new));
    let open = |o: &Opener, id, payload: &str| {
        code(o.open(
            Delivery {
                id,
                kind: KIND,
                payload,
            },
            now,
        ))
    };
    assert_eq!(open(&opener, 1, &a), None);
    assert_eq!(open(&opener, 2, &b), None);
    // Retire the old key (SIGHUP with only the new one).
    let new_only = opener.keys().recipients()[1].to_pem();
    opener.reload(Keyring::new(
        vec![RecipientKey::from_pem(&new_only).unwrap()],
        vec![signer],
    ));
    assert_eq!(
        open(&opener, 3, &seal(&to_old)),
        Some(RefusalCode::UnknownKey)
    );
    assert_eq!(open(&opener, 4, &seal(&to_new)), None);
}
