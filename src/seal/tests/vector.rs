//! SEALED.md's deterministic vector, in full and in both directions.

use super::*;

const VECTOR: &str = include_str!("../testdata/sealed-v1.json");

/// The exact plaintext of the vector's request: its `payload_json` as
/// ASCII-only JSON (`ü` and `ß` escaped, as Python's `json.dumps` writes by
/// default). Found by opening the request; `payload_json` itself is 8 bytes
/// shorter and does not reproduce the vector's `ct`.
const SEALED_PAYLOAD: &str =
    r#"{"participant":"P-0042","fields":["email","phone"],"note":"Gr\u00fc\u00dfe"}"#;

fn vector() -> Value {
    serde_json::from_str(VECTOR).unwrap()
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or_else(|| panic!("{name} missing"))
}

/// The 32 key bytes at the end of a PEM's DER.
fn pem_tail(pem: &str) -> Vec<u8> {
    use base64ct::{Base64, Encoding};
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = Base64::decode_vec(&body).unwrap();
    der[der.len() - 32..].to_vec()
}

fn castellum_key(v: &Value) -> RecipientKey {
    RecipientKey::from_pem(text(v, "castellum_x25519_private_pem")).unwrap()
}

fn scheduler_key(v: &Value) -> SigningKey {
    SigningKey::from_pem(text(v, "scheduler_ed25519_private_pem")).unwrap()
}

fn opener(v: &Value) -> Opener {
    let signer = SignerPublic::from_pem(text(v, "scheduler_ed25519_public_pem")).unwrap();
    Opener::new(Keyring::new(vec![castellum_key(v)], vec![signer]))
}

fn delivery<'a>(v: &'a Value, payload: &'a str) -> Delivery<'a> {
    Delivery {
        id: v["job_id"].as_i64().unwrap(),
        kind: text(v, "kind"),
        payload,
    }
}

#[test]
fn vector_keys_read_to_the_listed_bytes_and_ids_and_write_back_identically() {
    let v = vector();
    let castellum = castellum_key(&v);
    assert_eq!(
        pem_tail(text(&v, "castellum_x25519_private_pem")),
        hex(text(&v, "castellum_x25519_private_hex"))
    );
    assert_eq!(
        castellum.public().as_bytes().to_vec(),
        hex(text(&v, "castellum_x25519_public_hex"))
    );
    assert_eq!(castellum.kid().as_str(), text(&v, "castellum_kid"));
    assert_eq!(
        castellum.to_pem().as_str(),
        text(&v, "castellum_x25519_private_pem")
    );
    assert_eq!(
        castellum.public().to_pem(),
        text(&v, "castellum_x25519_public_pem")
    );

    let castellum_public =
        RecipientPublic::from_pem(text(&v, "castellum_x25519_public_pem")).unwrap();
    assert_eq!(castellum_public.kid().as_str(), text(&v, "castellum_kid"));
    assert_eq!(
        castellum_public.to_pem(),
        text(&v, "castellum_x25519_public_pem")
    );

    let scheduler = scheduler_key(&v);
    assert_eq!(
        scheduler.public().as_bytes().to_vec(),
        hex(text(&v, "scheduler_ed25519_public_hex"))
    );
    assert_eq!(scheduler.kid().as_str(), text(&v, "scheduler_kid"));
    assert_eq!(
        scheduler.to_pem().as_str(),
        text(&v, "scheduler_ed25519_private_pem")
    );
    let scheduler_public =
        SignerPublic::from_pem(text(&v, "scheduler_ed25519_public_pem")).unwrap();
    assert_eq!(scheduler_public.kid().as_str(), text(&v, "scheduler_kid"));
    assert_eq!(
        scheduler_public.to_pem(),
        text(&v, "scheduler_ed25519_public_pem")
    );

    // KeyFile tells the four apart and names the same ids.
    for (field, kid, private, algorithm) in [
        (
            "castellum_x25519_private_pem",
            "castellum_kid",
            true,
            Algorithm::X25519,
        ),
        (
            "castellum_x25519_public_pem",
            "castellum_kid",
            false,
            Algorithm::X25519,
        ),
        (
            "scheduler_ed25519_private_pem",
            "scheduler_kid",
            true,
            Algorithm::Ed25519,
        ),
        (
            "scheduler_ed25519_public_pem",
            "scheduler_kid",
            false,
            Algorithm::Ed25519,
        ),
    ] {
        let file = KeyFile::from_pem(text(&v, field)).unwrap();
        assert_eq!(file.kid().as_str(), text(&v, kid), "{field}");
        assert_eq!(file.is_private(), private, "{field}");
        assert_eq!(file.algorithm(), algorithm, "{field}");
    }
}

#[test]
fn vector_header_and_answer_header_bytes_are_exact() {
    let v = vector();
    let request = &v["request"];
    let h = b64::decode(text(request, "h"), MAX_HEADER).unwrap();
    assert_eq!(h, text(&v, "header_json").as_bytes());
    let header: RequestHeader = serde_json::from_str(text(&v, "header_json")).unwrap();
    assert_eq!(header.to_bytes(), text(&v, "header_json").as_bytes());

    let rh = b64::decode(text(&v["answer"], "h"), MAX_HEADER).unwrap();
    let expected = br#"{"v":1,"ref":"AAECAwQFBgcICQoLDA0ODw","job":4711,"outcome":"done"}"#;
    assert_eq!(rh, expected);
    assert_eq!(
        AnswerHeader::new(&header.reference, 4711, Outcome::Done).to_bytes(),
        expected
    );
}

#[test]
fn vector_request_opens_exports_the_secret_and_seals_exactly_the_answer() {
    let v = vector();
    let opener = opener(&v);
    let payload = v["request"].to_string();
    let now = v["now"].as_u64().unwrap();
    let opened = super::opened(opener.open(delivery(&v, &payload), now));

    // The sealed plaintext is the vector's payload as ASCII-only JSON text
    // (the generator escaped "ü" and "ß"); `payload_json` is the same JSON
    // value written with UTF-8. The bytes are what was sealed.
    assert_eq!(opened.payload.get(), SEALED_PAYLOAD);
    assert_eq!(
        serde_json::from_str::<Value>(opened.payload.get()).unwrap(),
        serde_json::from_str::<Value>(text(&v, "payload_json")).unwrap()
    );
    assert_eq!(opened.header.reference, "AAECAwQFBgcICQoLDA0ODw");
    assert_eq!(opened.header.kind, text(&v, "kind"));
    assert_eq!(opened.header.ch, text(&v, "channel"));
    assert_eq!(opened.header.skid, text(&v, "scheduler_kid"));
    assert_eq!(opened.header.rkid, text(&v, "castellum_kid"));
    assert_eq!(
        opened.responder.secret(),
        &hex32(text(&v, "exporter_secret_hex"))
    );
    assert_eq!(opened.responder.job(), 4711);

    assert_eq!(text(&v, "answer_outcome"), "done");
    let answer = opened
        .responder
        .seal_with_nonce(
            Outcome::Done,
            text(&v, "answer_plaintext_json"),
            &hex32(text(&v, "response_nonce_hex")),
        )
        .unwrap();
    assert_eq!(answer, v["answer"]);
}

#[test]
fn vector_request_is_reproduced_byte_for_byte_from_the_ephemeral_ikm() {
    let v = vector();
    let castellum_public =
        RecipientPublic::from_pem(text(&v, "castellum_x25519_public_pem")).unwrap();
    let sealer = Sealer::new(scheduler_key(&v), castellum_public);
    let header: RequestHeader = serde_json::from_str(text(&v, "header_json")).unwrap();
    // The sealer writes this very header for these inputs.
    assert_eq!(
        sealer.header(
            text(&v, "kind"),
            &hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap(),
            v["now"].as_u64().unwrap(),
            v["now"].as_u64().unwrap() + 300,
        ),
        header
    );
    assert_eq!(
        serde_json::from_str::<Value>(SEALED_PAYLOAD).unwrap(),
        serde_json::from_str::<Value>(text(&v, "payload_json")).unwrap()
    );
    let sealed = sealer
        .seal_header(
            header,
            SEALED_PAYLOAD,
            &hex32(text(&v, "ephemeral_ikm_hex")),
        )
        .unwrap();
    assert_eq!(sealed.envelope, v["request"]);
    assert_eq!(sealed.reference, "AAECAwQFBgcICQoLDA0ODw");
    assert_eq!(sealed.exp, 1_796_000_300);

    // The kept key opens the vector's answer, also after a round trip
    // through its stored text.
    let plaintext: Value = serde_json::from_str(text(&v, "answer_plaintext_json")).unwrap();
    assert_eq!(
        sealed.answer_key.open(4711, Outcome::Done, &v["answer"]),
        Ok(plaintext.clone())
    );
    let stored = sealed.answer_key.to_secret_text();
    let reloaded = AnswerKey::from_secret_text(&stored).unwrap();
    assert_eq!(reloaded.reference(), "AAECAwQFBgcICQoLDA0ODw");
    assert_eq!(
        reloaded.open(4711, Outcome::Done, &v["answer"]),
        Ok(plaintext)
    );
}

#[test]
fn vector_request_expires_at_exp_plus_61_not_at_exp_plus_60() {
    let v = vector();
    let payload = v["request"].to_string();
    let exp = 1_796_000_300;
    let at = |now| super::code(opener(&v).open(delivery(&v, &payload), now));
    assert_eq!(at(exp + 60), None);
    assert_eq!(at(exp + 61), Some(RefusalCode::Expired));
    // Early is not refused: SEALED.md checks no `iat` (only `exp`).
    assert_eq!(at(exp - 1000), None);
}
