//! The receiver's refusals: a code from SEALED.md's table and a message that
//! is safe to post as the job's plain `failed` error (it names what failed,
//! never key material or a byte of the payload).

use std::fmt;

use serde_json::{Value, json};

/// The refusal codes of SEALED.md, in the order the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// The envelope or header is not well-formed, `v` or `suite` is unknown,
    /// or HPKE cannot open the ciphertext.
    Malformed,
    /// `skid` is not a pinned signer, or the signature does not verify.
    BadSignature,
    /// The header names another channel, or another kind than the job's.
    Mismatch,
    /// Now is past `exp` plus the allowed skew.
    Expired,
    /// `rkid` names none of the recipient keys.
    UnknownKey,
    /// The same request (`enc`) was already seen under another job id.
    Replay,
    /// A plain payload where sealing is required.
    Required,
}

impl RefusalCode {
    pub const ALL: [RefusalCode; 7] = [
        RefusalCode::Malformed,
        RefusalCode::BadSignature,
        RefusalCode::Mismatch,
        RefusalCode::Expired,
        RefusalCode::UnknownKey,
        RefusalCode::Replay,
        RefusalCode::Required,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::Malformed => "seal_malformed",
            RefusalCode::BadSignature => "seal_bad_signature",
            RefusalCode::Mismatch => "seal_mismatch",
            RefusalCode::Expired => "seal_expired",
            RefusalCode::UnknownKey => "seal_unknown_key",
            RefusalCode::Replay => "seal_replay",
            RefusalCode::Required => "seal_required",
        }
    }

    pub fn parse(text: &str) -> Option<RefusalCode> {
        RefusalCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a sealed request was refused. Post it with [`Refusal::to_error`] as the
/// job's `failed` error; never call the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(code: RefusalCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Refusal {
        Refusal::new(RefusalCode::Malformed, message)
    }

    /// The job's plain error: `{"code": "seal_...", "message": "..."}`.
    pub fn to_error(&self) -> Value {
        json!({"code": self.code.as_str(), "message": self.message})
    }

    /// A plain error posted by an agent: exactly `code` (a known refusal code)
    /// and `message` (a string). Unauthenticated: anyone who can write the
    /// job's answer can write one.
    pub fn from_error(error: &Value) -> Option<Refusal> {
        let object = error.as_object()?;
        if object.len() != 2 {
            return None;
        }
        let code = RefusalCode::parse(object.get("code")?.as_str()?)?;
        let message = object.get("message")?.as_str()?;
        Some(Refusal::new(code, message))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}
