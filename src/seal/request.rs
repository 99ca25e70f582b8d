//! The scheduler's side of a request: seal a payload to castellum's key, sign
//! it, and keep what opens the answer.

use std::path::Path;
use std::time::Duration;

use std::convert::Infallible;

use hpke::rand_core::{TryCryptoRng, TryRng};
use serde_json::Value;
use serde_json::value::RawValue;

use super::answer::AnswerKey;
use super::envelope::{RequestEnvelope, RequestHeader};
use super::keys::{Kem, KeyError, RecipientPublic, SigningKey};
use super::{
    DEFAULT_CHANNEL, MAX_HEADER, REQUEST_INFO, RESPONSE_LABEL, SIGNATURE_LABEL, SUITE, b64,
};

type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;

/// Why a request could not be sealed (the sender's own mistake or its
/// machine's; nothing here is the receiver's refusal).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the payload is not JSON")]
    PayloadNotJson,
    #[error(
        "the sealed header would be {0} bytes, more than {MAX_HEADER} (is the kind or the channel very long?)"
    )]
    HeaderTooLong(usize),
    #[error("the recipient's public key cannot be used (a low-order X25519 point?)")]
    BadRecipient,
    #[error("the system's random number generator failed")]
    Random,
}

/// The scheduler's sealer: its signing key and castellum's pinned recipient
/// key. Cheap to share (`Arc`) between threads; sealing takes `&self`.
#[derive(Debug)]
pub struct Sealer {
    signing: SigningKey,
    recipient: RecipientPublic,
    channel: String,
}

/// A sealed request, ready to submit.
#[derive(Debug)]
pub struct SealedRequest {
    /// The job's payload: `{"sealed":"bc1","h":...,"enc":...,"ct":...,"sig":...}`.
    pub envelope: Value,
    /// The header's `ref`: send it as the job's `idempotency_key`.
    pub reference: String,
    /// `iat` + the timeout, as in the header (Unix seconds).
    pub exp: u64,
    /// What opens the answer. Secret material: whoever holds it can read the
    /// answer (see [`AnswerKey`]).
    pub answer_key: AnswerKey,
}

impl Sealer {
    /// Seal to `recipient` (castellum's X25519 public key), sign with
    /// `signing`, on the channel `default`.
    pub fn new(signing: SigningKey, recipient: RecipientPublic) -> Sealer {
        Sealer {
            signing,
            recipient,
            channel: DEFAULT_CHANNEL.to_string(),
        }
    }

    /// `--sign-with KEY --seal-to PUB`.
    pub fn from_files(signing_key: &Path, recipient: &Path) -> Result<Sealer, KeyError> {
        Ok(Sealer::new(
            SigningKey::read(signing_key)?,
            RecipientPublic::read(recipient)?,
        ))
    }

    /// The channel named in the header (`ch`); `default` unless set.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Sealer {
        self.channel = channel.into();
        self
    }

    pub fn signer(&self) -> &SigningKey {
        &self.signing
    }

    pub fn recipient(&self) -> &RecipientPublic {
        &self.recipient
    }

    /// Seal `payload` for a job of `kind` with `timeout`, at `now` (Unix
    /// seconds; [`super::unix_now`]). `exp` is `now` + the timeout rounded up
    /// to whole seconds.
    pub fn seal(
        &self,
        kind: &str,
        payload: &Value,
        timeout: Duration,
        now: u64,
    ) -> Result<SealedRequest, SealError> {
        let text = serde_json::to_string(payload).map_err(|_| SealError::PayloadNotJson)?;
        self.seal_text(kind, &text, timeout, now)
    }

    /// As [`Sealer::seal`], with the payload's JSON text sealed exactly as
    /// given.
    pub fn seal_text(
        &self,
        kind: &str,
        payload_json: &str,
        timeout: Duration,
        now: u64,
    ) -> Result<SealedRequest, SealError> {
        let mut reference = [0u8; 16];
        fill_random(&mut reference)?;
        let exp = now.saturating_add(timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0));
        let header = self.header(kind, &reference, now, exp);
        let mut ikm = zeroize::Zeroizing::new([0u8; 32]);
        fill_random(ikm.as_mut())?;
        self.seal_header(header, payload_json, &ikm)
    }

    pub(crate) fn header(
        &self,
        kind: &str,
        reference: &[u8; 16],
        iat: u64,
        exp: u64,
    ) -> RequestHeader {
        RequestHeader {
            v: 1,
            suite: SUITE.to_string(),
            rkid: self.recipient.kid().to_string(),
            skid: self.signing.kid().to_string(),
            ch: self.channel.clone(),
            kind: kind.to_string(),
            reference: b64::encode(reference),
            iat,
            exp,
        }
    }

    /// Seal with `header` as given; the ephemeral HPKE key pair is
    /// DeriveKeyPair(`ikm`) (RFC 9180 §7.1.3), so a fixed `ikm` reproduces a
    /// vector.
    pub(crate) fn seal_header(
        &self,
        header: RequestHeader,
        payload_json: &str,
        ikm: &[u8; 32],
    ) -> Result<SealedRequest, SealError> {
        if serde_json::from_str::<&RawValue>(payload_json).is_err() {
            return Err(SealError::PayloadNotJson);
        }
        let h = header.to_bytes();
        if h.len() > MAX_HEADER {
            return Err(SealError::HeaderTooLong(h.len()));
        }
        let (encapped, mut context) = hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(
            &hpke::OpModeS::Base,
            self.recipient.hpke(),
            &request_info(&h),
            &mut Ikm(Some(ikm)),
        )
        .map_err(|_| SealError::BadRecipient)?;
        let ct = context
            .seal(payload_json.as_bytes(), b"")
            .map_err(|_| SealError::BadRecipient)?;
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        context
            .export(RESPONSE_LABEL, secret.as_mut())
            .expect("32 bytes are within the exporter's limit");
        let enc: [u8; 32] = hpke::Serializable::to_bytes(&encapped).into();
        let sig = self.signing.sign(&signed_bytes(&h, &enc, &ct));
        let envelope = RequestEnvelope {
            h,
            header,
            enc,
            ct,
            sig,
        };
        let reference = envelope.header.reference.clone();
        Ok(SealedRequest {
            envelope: envelope.to_value(),
            exp: envelope.header.exp,
            answer_key: AnswerKey::new(reference.clone(), enc, secret),
            reference,
        })
    }
}

/// `info = "backchannel/v1 request" || 0x00 || h`.
pub(crate) fn request_info(h: &[u8]) -> Vec<u8> {
    let mut info = Vec::with_capacity(REQUEST_INFO.len() + 1 + h.len());
    info.extend_from_slice(REQUEST_INFO);
    info.push(0);
    info.extend_from_slice(h);
    info
}

/// What the signature covers:
/// `"backchannel/v1 request signature" || 0x00 || u32be(len(h)) || h || enc || ct`.
pub(crate) fn signed_bytes(h: &[u8], enc: &[u8; 32], ct: &[u8]) -> Vec<u8> {
    let length = u32::try_from(h.len()).expect("a header is at most 1024 bytes");
    let mut message =
        Vec::with_capacity(SIGNATURE_LABEL.len() + 1 + 4 + h.len() + enc.len() + ct.len());
    message.extend_from_slice(SIGNATURE_LABEL);
    message.push(0);
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(h);
    message.extend_from_slice(enc);
    message.extend_from_slice(ct);
    message
}

pub(crate) fn fill_random(bytes: &mut [u8]) -> Result<(), SealError> {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_fill_bytes(bytes)
        .map_err(|_| SealError::Random)
}

/// The "random" source handed to HPKE: exactly the 32 bytes of `ikm`, once.
/// `hpke` generates the ephemeral key as DeriveKeyPair(32 bytes of its rng)
/// (its `Kem::gen_keypair_with_rng`), and asks for nothing else in base mode;
/// the vector test would fail if that changed.
pub(crate) struct Ikm<'a>(pub(crate) Option<&'a [u8; 32]>);

impl TryRng for Ikm<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("HPKE asks for the ephemeral key's 32 bytes only")
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("HPKE asks for the ephemeral key's 32 bytes only")
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let ikm = self
            .0
            .take()
            .expect("HPKE asks for the ephemeral key's 32 bytes once");
        dst.copy_from_slice(ikm);
        Ok(())
    }
}

impl TryCryptoRng for Ikm<'_> {}
