//! sealed/v1: payloads and answers sealed end to end, so that the broker and
//! its PostgreSQL carry them but can neither read nor forge them. The wire
//! format is SEALED.md (the shared contract); this module implements it byte
//! for byte and is tested against its deterministic vector
//! (`src/seal/testdata/sealed-v1.json`) and RFC 9180's vectors for the suite.
//!
//! # Who uses what
//!
//! | side | type | what for |
//! | --- | --- | --- |
//! | scheduler (`submit --seal-to PUB --sign-with KEY`) | [`Sealer`] → [`SealedRequest`] | seal and sign a payload; `reference` is the idempotency key; keep the [`AnswerKey`] |
//! | scheduler, later | [`AnswerKey::open`] | open the job's answer; refuses another job, ref or outcome, and anything unsealed ([`AnswerError`]) |
//! | castellum's agent (`--open-with`, `--trust-signer`, `--require-sealed`) | [`Opener`] with a [`Keyring`] | check in SEALED.md's order, open ([`Incoming`]), or refuse ([`Refusal`]: post [`Refusal::to_error`] as the job's `failed` error) |
//! | castellum's agent, after the handler | [`Responder::seal`] (in [`Opened`]) | seal the handler's answer (result or error) for this job |
//! | broker (`BACKCHANNEL_REQUIRE_SEALED`, `BACKCHANNEL_SEAL_SIGNERS`) | [`Door`] | form, signature (public keys only) and kind at submit; form of answers |
//! | `backchannel keys new\|id` | [`write_new_pair`], [`KeyFile`] | openssl-compatible PEM files and key ids |
//!
//! Times are Unix seconds passed in by the caller ([`unix_now`]), so tests
//! need no clock.
//!
//! # Decisions where SEALED.md is silent
//!
//! - **Sealed or plain**: a payload is sealed when it is a JSON object with a
//!   `sealed` member, whatever its value; a near miss (`"sealed":"bc2"`, a
//!   member missing or extra, a non-string member) is `seal_malformed`, never
//!   plain. See [`envelope`](self::envelope) for the strict parsing.
//! - **Signatures** verify strictly (`verify_strict`: canonical encodings,
//!   no small-order keys or points). A weak signer key is refused on load.
//! - **The replay check records** the request (it is signed by then), so of
//!   two concurrent deliveries under two job ids exactly one is opened. See
//!   [`ReplayCache`] for the bound and why a full cache refuses.
//! - **Answers**: an answer to a sealed request that is plain is never
//!   castellum's word ([`AnswerError::NotSealed`]), except a plain `failed`
//!   error that is exactly `{"code":"seal_*","message":...}`, which is
//!   surfaced as castellum's refusal ([`AnswerError::Refused`];
//!   unauthenticated, but it carries no answer either).
//! - **`exp`** is `iat` + the job's timeout rounded up to whole seconds.
//!
//! # Crates, and why
//!
//! No primitive is written here; each comes from a maintained, audited-by-use
//! crate of the RustCrypto / dalek family, all on one generation so the tree
//! holds one `sha2`, `digest`, `hmac` and `rand_core` (the ones `rand` and
//! `postgres-protocol` already bring):
//!
//! - `hpke` 0.15 (rozbb): RFC 9180 with the exporter interface
//!   (`Context.Export`), which the answer needs and single-shot APIs hide;
//!   checked against the RFC's own vectors. Default features off: no ML-KEM,
//!   no NIST curves, no AES. It derives the ephemeral key as
//!   DeriveKeyPair(32 random bytes), which lets the SEALED.md vector be
//!   reproduced exactly from its `ephemeral_ikm`. `hpke-rs` was the
//!   alternative; its RustCrypto backend lags a generation and its default
//!   backend is libcrux (C-like verified code, a larger tree).
//! - `ed25519-dalek` 3: Ed25519 with `verify_strict` and zeroize-on-drop
//!   signing keys. Its `pkcs8`/`pem` features are enabled, but key files are
//!   read by the one PEM path below, for both key kinds.
//! - `chacha20poly1305` 0.11 and `hkdf` 0.13: the answer's AEAD and KDF (the
//!   same implementations `hpke` uses inside).
//! - `pkcs8` 0.11 (with `der`/`spki`, `pem`): RFC 8410 key files as openssl
//!   writes and reads them, for X25519 and Ed25519 alike.
//! - `base64ct`: constant-time, strict base64url (no padding, canonical last
//!   character), already required by `pkcs8`'s PEM.
//! - `sha2` (key ids), `subtle` (comparisons), `zeroize` (secrets).

mod answer;
mod b64;
mod door;
pub mod envelope;
mod keys;
mod open;
mod refusal;
mod replay;
mod request;

#[cfg(test)]
mod tests;

pub use answer::{AnswerError, AnswerKey, AnswerKeyError, Responder};
pub use door::{Door, DoorCode, DoorRefusal};
pub use envelope::{AnswerHeader, Form, RequestHeader, form};
pub use keys::{
    Algorithm, KeyError, KeyFile, KeyId, RecipientKey, RecipientPublic, SignerPublic, SigningKey,
    write_new_pair,
};
pub use open::{Delivery, Incoming, Keyring, Opened, Opener};
pub use refusal::{Refusal, RefusalCode};
pub use replay::{DEFAULT_CAPACITY as DEFAULT_REPLAY_CAPACITY, ReplayCache, ReplayError};
pub use request::{SealError, SealedRequest, Sealer};

use std::fmt;

/// The envelope's marker: `"sealed":"bc1"`.
pub const MARKER: &str = "bc1";
/// The only suite of sealed/v1.
pub const SUITE: &str = "X25519-SHA256-ChaCha20Poly1305";
/// The largest request header (`h`), in bytes.
pub const MAX_HEADER: usize = 1024;
/// The clock skew the expiry check allows: refused when now > `exp` + this.
pub const SKEW_SECS: u64 = 60;
/// The channel named in headers (`ch`) unless configured otherwise.
pub const DEFAULT_CHANNEL: &str = "default";

const REQUEST_INFO: &[u8] = b"backchannel/v1 request";
const SIGNATURE_LABEL: &[u8] = b"backchannel/v1 request signature";
const RESPONSE_LABEL: &[u8] = b"backchannel/v1 response";

/// How a job ended, as the answer header names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The job's `result`.
    Done,
    /// The job's `error`.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "done" => Some(Outcome::Done),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wall clock in Unix seconds (0 before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
