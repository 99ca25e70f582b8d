//! The tests of sealed/v1: SEALED.md's vector, RFC 9180's vectors for the
//! suite, every refusal in order, tampering, answers, the broker's door, and
//! keys made by the real `openssl`.

mod answers;
mod door;
mod openssl;
mod refusals;
mod rfc9180;
mod vector;

use serde_json::{Value, json};

use super::keys::Kem;
use super::request::{Ikm, fill_random, request_info, signed_bytes};
use super::*;

pub(super) fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(super) fn hex32(text: &str) -> [u8; 32] {
    hex(text).try_into().expect("32 bytes")
}

/// A recipient and a signer made for one test, and the sealer and opener
/// that use them.
pub(super) struct Fixture {
    pub recipient: RecipientPublic,
    pub signer: SignerPublic,
    pub sealer: Sealer,
    pub opener: Opener,
    pub now: u64,
}

pub(super) const KIND: &str = "contact.lookup";
pub(super) const PAYLOAD: &str = r#"{"participant":"P-0042","marker":"PLAINTEXT-MARKER-7f3a"}"#;

pub(super) fn fixture() -> Fixture {
    fixture_with(|opener| opener)
}

/// A fixture whose opener is configured by `configure`.
pub(super) fn fixture_with(configure: impl FnOnce(Opener) -> Opener) -> Fixture {
    let recipient_key = RecipientKey::generate().unwrap();
    let signing_key = SigningKey::generate().unwrap();
    let recipient = recipient_key.public().clone();
    let signer = signing_key.public().clone();
    Fixture {
        sealer: Sealer::new(signing_key, recipient.clone()),
        opener: configure(Opener::new(Keyring::new(
            vec![recipient_key],
            vec![signer.clone()],
        ))),
        recipient,
        signer,
        now: 1_796_000_000,
    }
}

impl Fixture {
    /// Reload the opener with the same keys (read back from their PEM, as a
    /// SIGHUP would).
    pub fn reload_same_keys(&self) {
        let keys = self.opener.keys();
        self.opener.reload(Keyring::new(
            keys.recipients()
                .iter()
                .map(|key| RecipientKey::from_pem(&key.to_pem()).unwrap())
                .collect(),
            keys.signers().to_vec(),
        ));
    }

    /// A fresh request of `KIND` with a 300 s timeout, sealed at `now`.
    pub fn seal(&self) -> SealedRequest {
        self.sealer
            .seal_text(KIND, PAYLOAD, std::time::Duration::from_secs(300), self.now)
            .unwrap()
    }

    pub fn open(&self, id: i64, payload: &Value, now: u64) -> Result<Incoming, Refusal> {
        self.open_as(id, KIND, payload, now)
    }

    pub fn open_as(
        &self,
        id: i64,
        kind: &str,
        payload: &Value,
        now: u64,
    ) -> Result<Incoming, Refusal> {
        let text = payload.to_string();
        self.opener.open(
            Delivery {
                id,
                kind,
                payload: &text,
            },
            now,
        )
    }

    /// The header this fixture's sealer writes, for tests to alter.
    pub fn header(&self) -> RequestHeader {
        let mut reference = [0u8; 16];
        fill_random(&mut reference).unwrap();
        self.sealer
            .header(KIND, &reference, self.now, self.now + 300)
    }
}

/// The refusal code of an open, or `None` when it opened.
pub(super) fn code(result: Result<Incoming, Refusal>) -> Option<RefusalCode> {
    match result {
        Ok(_) => None,
        Err(refusal) => Some(refusal.code),
    }
}

pub(super) fn opened(result: Result<Incoming, Refusal>) -> Opened {
    match result {
        Ok(Incoming::Sealed(opened)) => *opened,
        Ok(Incoming::Plain) => panic!("opened as plain"),
        Err(refusal) => panic!("refused: {refusal}"),
    }
}

/// The four decoded parts of a request envelope.
pub(super) struct Parts {
    pub h: Vec<u8>,
    pub enc: Vec<u8>,
    pub ct: Vec<u8>,
    pub sig: Vec<u8>,
}

impl Parts {
    pub fn of(envelope: &Value) -> Parts {
        let get = |name: &str| b64::decode(envelope[name].as_str().unwrap(), 1 << 20).unwrap();
        Parts {
            h: get("h"),
            enc: get("enc"),
            ct: get("ct"),
            sig: get("sig"),
        }
    }

    pub fn to_value(&self) -> Value {
        json!({
            "sealed": "bc1",
            "h": b64::encode(&self.h),
            "enc": b64::encode(&self.enc),
            "ct": b64::encode(&self.ct),
            "sig": b64::encode(&self.sig),
        })
    }

    /// Sign the parts as they are now with `key`.
    pub fn sign(mut self, key: &SigningKey) -> Parts {
        let enc: [u8; 32] = self
            .enc
            .clone()
            .try_into()
            .expect("enc is 32 bytes to sign");
        self.sig = key.sign(&signed_bytes(&self.h, &enc, &self.ct)).to_vec();
        self
    }
}

/// Seal `plaintext` under the raw header bytes `h` to `recipient`, signed by
/// `signer`: any header, well-formed or not, correctly sealed and signed.
pub(super) fn seal_raw(
    h: &[u8],
    plaintext: &[u8],
    recipient: &RecipientPublic,
    signer: &SigningKey,
) -> Parts {
    let mut ikm = [0u8; 32];
    fill_random(&mut ikm).unwrap();
    let (encapped, mut context) =
        hpke::setup_sender_with_rng::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
            &hpke::OpModeS::Base,
            recipient.hpke(),
            &request_info(h),
            &mut Ikm(Some(&ikm)),
        )
        .unwrap();
    let ct = context.seal(plaintext, b"").unwrap();
    let enc: [u8; 32] = hpke::Serializable::to_bytes(&encapped).into();
    Parts {
        h: h.to_vec(),
        enc: enc.to_vec(),
        ct,
        sig: vec![],
    }
    .sign(signer)
}
