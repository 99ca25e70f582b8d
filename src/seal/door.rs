//! The broker's optional gate (`BACKCHANNEL_REQUIRE_SEALED`,
//! `BACKCHANNEL_SEAL_SIGNERS`): with public keys only, refuse a submit whose
//! payload is not a well-formed sealed/v1 request, whose signature does not
//! verify (when signers are configured), or whose header names another kind;
//! and an answer to a sealed job that is neither a sealed answer nor a plain
//! `seal_*` refusal. It cannot open anything and checks no expiry, channel,
//! recipient or replay: those are the agent's.

use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

use super::Outcome;
use super::envelope::{AnswerEnvelope, AnswerHeader, Form, RequestEnvelope, RequestHeader, form};
use super::keys::{KeyError, SignerPublic};
use super::refusal::Refusal;
use super::request::signed_bytes;

/// What the door says no with; the edge maps it to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorCode {
    /// 400: not a well-formed sealed/v1 request, or an answer to a sealed job
    /// that is neither a sealed answer nor a `seal_*` refusal.
    NotSealed,
    /// 400: the header names another kind than the job's.
    Mismatch,
    /// 403: the signer is not one of `BACKCHANNEL_SEAL_SIGNERS`, or the
    /// signature does not verify.
    BadSignature,
}

impl DoorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            DoorCode::NotSealed => "not_sealed",
            DoorCode::Mismatch => "seal_mismatch",
            DoorCode::BadSignature => "seal_bad_signature",
        }
    }

    /// The HTTP status the edge answers with.
    pub fn status(self) -> u16 {
        match self {
            DoorCode::NotSealed | DoorCode::Mismatch => 400,
            DoorCode::BadSignature => 403,
        }
    }
}

impl fmt::Display for DoorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DoorRefusal {
    pub code: DoorCode,
    pub message: String,
}

impl DoorRefusal {
    fn new(code: DoorCode, message: impl Into<String>) -> DoorRefusal {
        DoorRefusal {
            code,
            message: message.into(),
        }
    }
}

/// The broker's gate. With no signers it checks form and kind only.
#[derive(Debug, Default)]
pub struct Door {
    signers: Vec<SignerPublic>,
}

impl Door {
    pub fn new(signers: Vec<SignerPublic>) -> Door {
        Door { signers }
    }

    /// `BACKCHANNEL_SEAL_SIGNERS=FILE,...`.
    pub fn from_files(signers: &[PathBuf]) -> Result<Door, KeyError> {
        Ok(Door {
            signers: signers
                .iter()
                .map(|path| SignerPublic::read(path))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn checks_signatures(&self) -> bool {
        !self.signers.is_empty()
    }

    /// Check a submitted payload for a job of `kind` on `channel`, in
    /// SEALED.md's order (form, then signature, then channel and kind). Returns the authenticated (when
    /// signers are configured) header: its `ref` is what the scheduler sends
    /// as the idempotency key.
    pub fn check_request(
        &self,
        channel: &str,
        kind: &str,
        payload: &Value,
    ) -> Result<RequestHeader, DoorRefusal> {
        if form(payload) == Form::Plain {
            return Err(DoorRefusal::new(
                DoorCode::NotSealed,
                "this broker accepts sealed payloads only (sealed/v1)",
            ));
        }
        let envelope = RequestEnvelope::parse(payload)
            .map_err(|Refusal { message, .. }| DoorRefusal::new(DoorCode::NotSealed, message))?;
        if self.checks_signatures() {
            let skid = &envelope.header.skid;
            let signed = signed_bytes(&envelope.h, &envelope.enc, &envelope.ct);
            let verified = self
                .signers
                .iter()
                .find(|signer| signer.kid() == skid.as_str())
                .is_some_and(|signer| signer.verify(&signed, &envelope.sig));
            if !verified {
                return Err(DoorRefusal::new(
                    DoorCode::BadSignature,
                    "the payload is not signed by a signer this broker trusts",
                ));
            }
        }
        if envelope.header.kind != kind {
            return Err(DoorRefusal::new(
                DoorCode::Mismatch,
                "the payload was sealed for another kind than the job's",
            ));
        }
        if envelope.header.ch != channel {
            return Err(DoorRefusal::new(
                DoorCode::Mismatch,
                "the payload was sealed for another channel than the job's",
            ));
        }
        Ok(envelope.header)
    }

    /// Check an answer to a sealed job `job`: a sealed answer whose (still
    /// unauthenticated, to the broker) header names this job and `outcome`,
    /// or, for `failed`, a plain `{"code": "seal_...", "message": ...}`.
    pub fn check_answer(
        &self,
        job: i64,
        outcome: Outcome,
        answer: &Value,
    ) -> Result<(), DoorRefusal> {
        let not_sealed = |message: &str| DoorRefusal::new(DoorCode::NotSealed, message);
        if form(answer) == Form::Plain {
            return match (outcome, Refusal::from_error(answer)) {
                (Outcome::Failed, Some(_)) => Ok(()),
                _ => Err(not_sealed(
                    "an answer to a sealed job is a sealed answer or a seal_* refusal",
                )),
            };
        }
        let envelope = AnswerEnvelope::parse(answer).map_err(|message| not_sealed(&message))?;
        let header = AnswerHeader::parse(&envelope.h).map_err(|message| not_sealed(&message))?;
        if header.job != job || header.outcome != outcome.as_str() {
            return Err(not_sealed(
                "the sealed answer's header names another job or outcome",
            ));
        }
        Ok(())
    }
}
