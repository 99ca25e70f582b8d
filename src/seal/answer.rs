//! The answer: sealed by castellum's agent under a key exported from the
//! request's HPKE context (RFC 9458 §4.4, with the job bound in), opened by
//! the scheduler with the [`AnswerKey`] it kept from sealing.
//!
//! ```text
//! secret = Context.Export("backchannel/v1 response", 32)
//! prk    = HKDF-Extract(salt = enc || rn, ikm = secret)          (SHA-256)
//! key    = HKDF-Expand(prk, "key", 32);  nonce = HKDF-Expand(prk, "nonce", 12)
//! rh     = {"v":1,"ref":<h.ref>,"job":<job id>,"outcome":"done"|"failed"}
//! ct     = ChaCha20-Poly1305(key, nonce, aad = "backchannel/v1 response" || 0x00 || rh, pt = answer)
//! ```

use std::fmt;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead as _, KeyInit, Payload};
use hkdf::Hkdf;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::envelope::{AnswerEnvelope, AnswerHeader, Form, form};
use super::refusal::Refusal;
use super::request::{SealError, fill_random};
use super::{Outcome, RESPONSE_LABEL, b64};

/// What the scheduler keeps from sealing a request to open its answer: the
/// request's `ref`, `enc` and the exported response secret.
///
/// **Secret material.** Whoever holds it can read the answer and forge one
/// the scheduler would accept. Its `Debug` shows the `ref` only; to keep it
/// across a restart (submit now, fetch later), [`AnswerKey::to_secret_text`]
/// writes it out and [`AnswerKey::from_secret_text`] reads it back: store that
/// text as you would a private key.
pub struct AnswerKey {
    reference: String,
    enc: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
}

/// Why an answer is not accepted as castellum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Castellum's agent refused the request: the job failed with a plain
    /// `{"code": "seal_...", "message": ...}`. Unauthenticated (the broker
    /// could have written it), but it never carries an answer.
    #[error("castellum refused the request: {0}")]
    Refused(Refusal),
    /// A plain answer (a result, or an error that is not a refusal): never
    /// castellum's word for a sealed request.
    #[error("the answer is not sealed, so it is not castellum's word")]
    NotSealed,
    /// Looks sealed but is not a well-formed sealed answer.
    #[error("the sealed answer is not well-formed: {0}")]
    Malformed(String),
    /// Does not open with this request's key: sealed by someone else, for
    /// another request, or altered on the way.
    #[error("the sealed answer does not open with this request's key: not castellum's word")]
    Forged,
    /// Castellum's answer to the same request under another `ref` (cannot
    /// happen without a forged header, kept apart for clarity).
    #[error("the sealed answer is for another request (ref)")]
    OtherRef,
    /// Castellum's answer to the same request, but under another job id: the
    /// request was submitted twice and this job got the other one's answer.
    #[error("the sealed answer is for job {named}, not this job")]
    OtherJob { named: i64 },
    /// Castellum's answer, but sealed as another outcome than the job's state.
    #[error("the sealed answer says {named}, but the job is {expected}")]
    OtherOutcome { named: Outcome, expected: Outcome },
}

impl AnswerError {
    /// A stable code: the refusal's `seal_*` code, or `answer_*`.
    pub fn code(&self) -> &'static str {
        match self {
            AnswerError::Refused(refusal) => refusal.code.as_str(),
            AnswerError::NotSealed => "answer_not_sealed",
            AnswerError::Malformed(_) => "answer_malformed",
            AnswerError::Forged => "answer_forged",
            AnswerError::OtherRef => "answer_other_ref",
            AnswerError::OtherJob { .. } => "answer_other_job",
            AnswerError::OtherOutcome { .. } => "answer_other_outcome",
        }
    }
}

impl AnswerKey {
    pub(crate) fn new(reference: String, enc: [u8; 32], secret: Zeroizing<[u8; 32]>) -> AnswerKey {
        AnswerKey {
            reference,
            enc,
            secret,
        }
    }

    /// The request's `ref` (its idempotency key).
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Open the answer of job `job`, whose state is `outcome` (`done`: pass
    /// its `result`; `failed`: its `error`). Returns castellum's answer.
    pub fn open(&self, job: i64, outcome: Outcome, answer: &Value) -> Result<Value, AnswerError> {
        if form(answer) == Form::Plain {
            return Err(match (outcome, Refusal::from_error(answer)) {
                (Outcome::Failed, Some(refusal)) => AnswerError::Refused(refusal),
                _ => AnswerError::NotSealed,
            });
        }
        let envelope = AnswerEnvelope::parse(answer).map_err(AnswerError::Malformed)?;
        let plaintext = decrypt(&self.secret, &self.enc, &envelope)?;
        let header = AnswerHeader::parse(&envelope.h).map_err(AnswerError::Malformed)?;
        if header
            .reference
            .as_bytes()
            .ct_eq(self.reference.as_bytes())
            .unwrap_u8()
            == 0
        {
            return Err(AnswerError::OtherRef);
        }
        if header.job != job {
            return Err(AnswerError::OtherJob { named: header.job });
        }
        let named = Outcome::parse(&header.outcome).expect("checked by AnswerHeader::parse");
        if named != outcome {
            return Err(AnswerError::OtherOutcome {
                named,
                expected: outcome,
            });
        }
        serde_json::from_slice(&plaintext)
            .map_err(|_| AnswerError::Malformed("the answer is not JSON".into()))
    }

    /// The key as text, to store and reload: `{"v":1,"ref":...,"enc":...,"secret":...}`.
    /// **Secret material** (see the type's docs).
    pub fn to_secret_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            r#"{{"v":1,"ref":{},"enc":"{}","secret":"{}"}}"#,
            serde_json::to_string(&self.reference).expect("a string serialises"),
            b64::encode(&self.enc),
            Zeroizing::new(b64::encode(self.secret.as_ref())).as_str(),
        ))
    }

    /// Read back what [`AnswerKey::to_secret_text`] wrote.
    pub fn from_secret_text(text: &str) -> Result<AnswerKey, AnswerKeyError> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stored {
            v: u64,
            #[serde(rename = "ref")]
            reference: String,
            enc: String,
            secret: String,
        }
        let mut stored: Stored = serde_json::from_str(text).map_err(|_| AnswerKeyError)?;
        let secret = b64::decode_exact::<32>(&stored.secret).map(Zeroizing::new);
        zeroize::Zeroize::zeroize(&mut stored.secret);
        let secret = secret.ok_or(AnswerKeyError)?;
        if stored.v != 1 || b64::decode_exact::<16>(&stored.reference).is_none() {
            return Err(AnswerKeyError);
        }
        let enc = b64::decode_exact::<32>(&stored.enc).ok_or(AnswerKeyError)?;
        Ok(AnswerKey::new(stored.reference, enc, secret))
    }
}

impl fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerKey")
            .field("ref", &self.reference)
            .finish_non_exhaustive()
    }
}

/// A stored answer key that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stored answer key (expected {{\"v\":1,\"ref\":...,\"enc\":...,\"secret\":...}})")]
pub struct AnswerKeyError;

/// Castellum's side: seals the answer to one opened request, for the job it
/// came with. Holds the request's response secret (zeroized on drop).
pub struct Responder {
    reference: String,
    job: i64,
    enc: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
}

impl Responder {
    pub(crate) fn new(
        reference: String,
        job: i64,
        enc: [u8; 32],
        secret: Zeroizing<[u8; 32]>,
    ) -> Responder {
        Responder {
            reference,
            job,
            enc,
            secret,
        }
    }

    pub fn job(&self) -> i64 {
        self.job
    }

    /// The sealed answer to post as the job's `result` (`Outcome::Done`) or
    /// `error` (`Outcome::Failed`).
    pub fn seal(&self, outcome: Outcome, answer: &Value) -> Result<Value, SealError> {
        let text = serde_json::to_string(answer).map_err(|_| SealError::PayloadNotJson)?;
        let mut rn = [0u8; 32];
        fill_random(&mut rn)?;
        self.seal_with_nonce(outcome, &text, &rn)
    }

    /// As [`Responder::seal`], with the answer's JSON text as given and the
    /// response nonce `rn` chosen by the caller (for test vectors; `rn` must
    /// be random otherwise).
    pub(crate) fn seal_with_nonce(
        &self,
        outcome: Outcome,
        answer_json: &str,
        rn: &[u8; 32],
    ) -> Result<Value, SealError> {
        if serde_json::from_str::<&RawValue>(answer_json).is_err() {
            return Err(SealError::PayloadNotJson);
        }
        let h = AnswerHeader::new(&self.reference, self.job, outcome).to_bytes();
        let (key, nonce) = derive(&self.secret, &self.enc, rn);
        let cipher = ChaCha20Poly1305::new(&(*key).into());
        let ct = cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: answer_json.as_bytes(),
                    aad: &aad(&h),
                },
            )
            .expect("ChaCha20-Poly1305 seals any answer a job can hold");
        Ok(AnswerEnvelope { h, rn: *rn, ct }.to_value())
    }

    /// The exported response secret (for the vector test).
    #[cfg(test)]
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("ref", &self.reference)
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

fn decrypt(
    secret: &[u8; 32],
    enc: &[u8; 32],
    envelope: &AnswerEnvelope,
) -> Result<Zeroizing<Vec<u8>>, AnswerError> {
    let (key, nonce) = derive(secret, enc, &envelope.rn);
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &envelope.ct,
                aad: &aad(&envelope.h),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| AnswerError::Forged)
}

/// HKDF-SHA256: extract with salt `enc || rn` from `secret`, expand `key`
/// (32 bytes) and `nonce` (12 bytes).
fn derive(secret: &[u8; 32], enc: &[u8; 32], rn: &[u8; 32]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(enc);
    salt[32..].copy_from_slice(rn);
    let hkdf = Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    hkdf.expand(b"key", key.as_mut())
        .expect("32 bytes are within HKDF-SHA256's limit");
    hkdf.expand(b"nonce", &mut nonce)
        .expect("12 bytes are within HKDF-SHA256's limit");
    (key, nonce)
}

/// `aad = "backchannel/v1 response" || 0x00 || rh`.
fn aad(rh: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RESPONSE_LABEL.len() + 1 + rh.len());
    aad.extend_from_slice(RESPONSE_LABEL);
    aad.push(0);
    aad.extend_from_slice(rh);
    aad
}
