//! Castellum's side of a request: check a job's payload in SEALED.md's order,
//! open it, and hand back the plain payload with what seals the answer.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::answer::Responder;
use super::envelope::{Form, RequestEnvelope, RequestHeader, form};
use super::keys::{Kem, KeyError, RecipientKey, SignerPublic};
use super::refusal::{Refusal, RefusalCode};
use super::replay::{DEFAULT_CAPACITY, ReplayCache, ReplayError};
use super::request::{request_info, signed_bytes};
use super::{DEFAULT_CHANNEL, RESPONSE_LABEL, SKEW_SECS};

type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;

/// The agent's keys: its X25519 recipient keys (`--open-with`, several during
/// a rotation) and the Ed25519 signers it trusts (`--trust-signer`). Either
/// list may be empty: with no signer, every sealed request is refused
/// `seal_bad_signature`; with no recipient key, `seal_unknown_key`.
#[derive(Debug, Default)]
pub struct Keyring {
    recipients: Vec<RecipientKey>,
    signers: Vec<SignerPublic>,
}

impl Keyring {
    pub fn new(recipients: Vec<RecipientKey>, signers: Vec<SignerPublic>) -> Keyring {
        Keyring {
            recipients,
            signers,
        }
    }

    /// Read every file; the first that fails is the error (it names the file).
    pub fn from_files(recipients: &[PathBuf], signers: &[PathBuf]) -> Result<Keyring, KeyError> {
        Ok(Keyring {
            recipients: recipients
                .iter()
                .map(|path| RecipientKey::read(path))
                .collect::<Result<_, _>>()?,
            signers: signers
                .iter()
                .map(|path| SignerPublic::read(path))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn recipients(&self) -> &[RecipientKey] {
        &self.recipients
    }

    pub fn signers(&self) -> &[SignerPublic] {
        &self.signers
    }

    fn recipient(&self, kid: &str) -> Option<&RecipientKey> {
        self.recipients.iter().find(|key| key.kid() == kid)
    }

    fn signer(&self, kid: &str) -> Option<&SignerPublic> {
        self.signers.iter().find(|key| key.kid() == kid)
    }
}

/// Castellum's agent's opener: its keys (reloadable), its channel, whether it
/// requires sealing, and the replay cache. Share it (`Arc`) between the tasks
/// that handle jobs; every method takes `&self`.
#[derive(Debug)]
pub struct Opener {
    keys: RwLock<Arc<Keyring>>,
    channel: String,
    require_sealed: bool,
    replay: ReplayCache,
}

/// A job as it reaches the agent: its id, its kind and its payload's JSON
/// text (`JobEvent::payload.get()`).
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub id: i64,
    pub kind: &'a str,
    pub payload: &'a str,
}

/// What [`Opener::open`] made of a payload.
#[derive(Debug)]
pub enum Incoming {
    /// Not sealed (and sealing not required): forward it as it is.
    Plain,
    /// Sealed, checked and opened.
    Sealed(Box<Opened>),
}

/// A request that passed every check, opened. Its `Debug` leaves the
/// payload out.
pub struct Opened {
    /// The plain payload, exactly the JSON text the scheduler sealed.
    pub payload: Box<RawValue>,
    /// The authenticated header: `ref` (for `X-Backchannel-Ref`), `kind`,
    /// `skid` (for `X-Backchannel-Signer`), `rkid`, `iat`, `exp`.
    pub header: RequestHeader,
    /// Seals the handler's answer for this job.
    pub responder: Responder,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("responder", &self.responder)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener on the channel `default`, not requiring sealing, with a
    /// replay cache of [`DEFAULT_CAPACITY`] entries.
    pub fn new(keys: Keyring) -> Opener {
        Opener {
            keys: RwLock::new(Arc::new(keys)),
            channel: DEFAULT_CHANNEL.to_string(),
            require_sealed: false,
            replay: ReplayCache::new(DEFAULT_CAPACITY),
        }
    }

    /// The channel the agent listens on (checked against the header's `ch`).
    pub fn with_channel(mut self, channel: impl Into<String>) -> Opener {
        self.channel = channel.into();
        self
    }

    /// `--require-sealed`: refuse plain payloads with `seal_required`.
    pub fn require_sealed(mut self, required: bool) -> Opener {
        self.require_sealed = required;
        self
    }

    /// At most `capacity` live replay-cache entries (see [`ReplayCache`]).
    pub fn with_replay_capacity(mut self, capacity: usize) -> Opener {
        self.replay = ReplayCache::new(capacity);
        self
    }

    /// Swap in new keys (SIGHUP). Requests being opened finish with the old
    /// ones; the replay cache is kept. Build the new [`Keyring`] first and
    /// keep the old one when that fails.
    pub fn reload(&self, keys: Keyring) {
        let mut slot = self.keys.write().unwrap_or_else(|e| e.into_inner());
        *slot = Arc::new(keys);
    }

    /// The keys in use.
    pub fn keys(&self) -> Arc<Keyring> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn requires_sealed(&self) -> bool {
        self.require_sealed
    }

    /// Entries in the replay cache now (for a gauge; see [`ReplayCache`]).
    pub fn replay_entries(&self) -> usize {
        self.replay.len()
    }

    /// The most live entries the replay cache holds.
    pub fn replay_capacity(&self) -> usize {
        self.replay.capacity()
    }

    /// Check and open `job`'s payload at `now` (Unix seconds), in SEALED.md's
    /// order; the first failing check is the refusal. A refusal is posted as
    /// the job's plain `failed` error ([`Refusal::to_error`]) and the handler
    /// is not called.
    pub fn open(&self, job: Delivery<'_>, now: u64) -> Result<Incoming, Refusal> {
        // The broker only stores JSON; text that is not JSON cannot be sealed.
        let value: Value = match serde_json::from_str(job.payload) {
            Ok(value) => value,
            Err(_) => return self.plain(),
        };
        if form(&value) == Form::Plain {
            return self.plain();
        }

        // 1. Well-formed envelope and header, `v` and `suite` known.
        let envelope = RequestEnvelope::parse(&value)?;
        let header = &envelope.header;
        let keys = self.keys();

        // 2. `skid` is a pinned signer and `sig` verifies.
        let signed = signed_bytes(&envelope.h, &envelope.enc, &envelope.ct);
        match keys.signer(&header.skid) {
            None => {
                return Err(Refusal::new(
                    RefusalCode::BadSignature,
                    format!("the signer {} is not trusted here", header.skid),
                ));
            }
            Some(signer) if !signer.verify(&signed, &envelope.sig) => {
                return Err(Refusal::new(
                    RefusalCode::BadSignature,
                    format!(
                        "the signature does not verify with the signer {}",
                        header.skid
                    ),
                ));
            }
            Some(_) => {}
        }

        // 3. `h.ch` is this channel and `h.kind` the job's kind.
        if header.ch != self.channel {
            return Err(Refusal::new(
                RefusalCode::Mismatch,
                format!(
                    "the request was sealed for another channel than {:?}",
                    self.channel
                ),
            ));
        }
        if header.kind != job.kind {
            return Err(Refusal::new(
                RefusalCode::Mismatch,
                format!(
                    "the request was sealed for another kind than the job's ({:?})",
                    job.kind
                ),
            ));
        }

        // 4. now <= exp + 60 s.
        let until = header.exp.saturating_add(SKEW_SECS);
        if now > until {
            return Err(Refusal::new(
                RefusalCode::Expired,
                format!(
                    "the request expired at {} (now {now}, {SKEW_SECS} s of clock skew allowed)",
                    header.exp
                ),
            ));
        }

        // 5. `rkid` names one of the recipient keys.
        let Some(recipient) = keys.recipient(&header.rkid) else {
            return Err(Refusal::new(
                RefusalCode::UnknownKey,
                format!(
                    "the request is sealed to the key {}, not held here",
                    header.rkid
                ),
            ));
        };

        // 6. This `enc` was not seen before under another job id.
        match self
            .replay
            .check_and_record(&envelope.enc, job.id, until, now)
        {
            Ok(()) => {}
            Err(ReplayError::Replayed { first_job }) => {
                return Err(Refusal::new(
                    RefusalCode::Replay,
                    format!("this sealed request was already delivered as job {first_job}"),
                ));
            }
            Err(ReplayError::Full { capacity }) => {
                return Err(Refusal::new(
                    RefusalCode::Replay,
                    format!(
                        "the replay cache is full ({capacity} live requests); \
                         refused rather than opened unchecked"
                    ),
                ));
            }
        }

        // 7. HPKE opens it.
        let cannot_open = || Refusal::malformed("the ciphertext does not open (HPKE)");
        let encapped =
            <<Kem as hpke::Kem>::EncappedKey as hpke::Deserializable>::from_bytes(&envelope.enc)
                .map_err(|_| cannot_open())?;
        let mut context = hpke::setup_receiver::<Aead, Kdf, Kem>(
            &hpke::OpModeR::Base,
            recipient.hpke(),
            &encapped,
            &request_info(&envelope.h),
        )
        .map_err(|_| cannot_open())?;
        let plaintext = context.open(&envelope.ct, b"").map_err(|_| cannot_open())?;
        let payload = String::from_utf8(plaintext)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .ok_or_else(|| Refusal::malformed("the opened payload is not JSON"))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        context
            .export(RESPONSE_LABEL, secret.as_mut())
            .expect("32 bytes are within the exporter's limit");

        let responder = Responder::new(header.reference.clone(), job.id, envelope.enc, secret);
        Ok(Incoming::Sealed(Box::new(Opened {
            payload,
            header: envelope.header,
            responder,
        })))
    }

    fn plain(&self) -> Result<Incoming, Refusal> {
        if self.require_sealed {
            Err(Refusal::new(
                RefusalCode::Required,
                "this agent accepts sealed payloads only",
            ))
        } else {
            Ok(Incoming::Plain)
        }
    }
}
