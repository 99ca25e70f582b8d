//! The four kinds of key file, as `openssl genpkey -algorithm X25519|ed25519`
//! and `openssl pkey -pubout` write them: PKCS#8 `PRIVATE KEY` and
//! SubjectPublicKeyInfo `PUBLIC KEY` PEM. Reading accepts PKCS#8 v1 (what
//! openssl writes) and v2 (with the public key, which must then match);
//! writing produces exactly openssl's forms (v1, 64-column base64, LF).
//!
//! Private keys live in memory that is zeroized on drop (`Zeroizing` buffers,
//! the zeroize-on-drop secrets of x25519-dalek and ed25519-dalek). No `Debug`
//! output and no error message carries key material: errors name the file and
//! what is wrong with it, never a byte of it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey as EdSigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _};
use pkcs8::der::asn1::{BitStringRef, OctetStringRef};
use pkcs8::der::pem::LineEnding;
use pkcs8::der::{Document, SecretDocument};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use pkcs8::{ObjectIdentifier, PrivateKeyInfoRef};
use rand::TryRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::b64;

pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
type HpkePrivate = <Kem as hpke::Kem>::PrivateKey;
type HpkePublic = <Kem as hpke::Kem>::PublicKey;

const X25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const PRIVATE_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";
/// A key file is a few hundred bytes; anything much larger is not one.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// The two algorithms of sealed/v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// The recipient key (castellum's agent opens with it).
    X25519,
    /// The signing key (the scheduler signs with it).
    Ed25519,
}

impl Algorithm {
    fn oid(self) -> ObjectIdentifier {
        match self {
            Algorithm::X25519 => X25519_OID,
            Algorithm::Ed25519 => ED25519_OID,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Algorithm> {
        if oid == X25519_OID {
            Some(Algorithm::X25519)
        } else if oid == ED25519_OID {
            Some(Algorithm::Ed25519)
        } else {
            None
        }
    }

    /// `x25519` or `ed25519`, as `backchannel keys new` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::X25519 => "x25519",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    pub fn parse(text: &str) -> Option<Algorithm> {
        match text.to_ascii_lowercase().as_str() {
            "x25519" => Some(Algorithm::X25519),
            "ed25519" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong with a key or a key file. The messages name the file and
/// the problem, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than a key file can be ({MAX_KEY_FILE} bytes at most)", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: {error}", path.display())]
    InFile { path: PathBuf, error: Box<KeyError> },
    #[error("not a PEM key (expected -----BEGIN PRIVATE KEY----- or -----BEGIN PUBLIC KEY-----)")]
    NotPem,
    #[error(
        "an encrypted private key; sealed/v1 keys are protected by file permissions (decrypt it with `openssl pkey`)"
    )]
    Encrypted,
    #[error("a {found} where a {expected} was expected")]
    WrongLabel {
        expected: &'static str,
        found: String,
    },
    #[error("not an X25519 or Ed25519 key")]
    UnknownAlgorithm,
    #[error("an {found} key where an {expected} key was expected")]
    WrongAlgorithm {
        expected: Algorithm,
        found: Algorithm,
    },
    #[error("a malformed {0} key")]
    Malformed(&'static str),
    #[error("the public key inside the private key file does not belong to it")]
    PublicKeyMismatch,
    #[error("a weak Ed25519 public key (small order); it cannot be trusted as a signer")]
    WeakKey,
    #[error("{} already exists; refusing to overwrite a key", path.display())]
    Exists { path: PathBuf },
    #[error("the system's random number generator failed")]
    Random,
}

impl KeyError {
    fn in_file(self, path: &Path) -> KeyError {
        match self {
            KeyError::Io { .. } | KeyError::TooLarge { .. } | KeyError::InFile { .. } => self,
            other => KeyError::InFile {
                path: path.to_path_buf(),
                error: Box::new(other),
            },
        }
    }
}

/// A key id: `base64url(SHA-256(raw 32-byte public key)[0..12])`, 16
/// characters. Public: it travels in every sealed header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn of(raw_public: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(raw_public);
        KeyId(b64::encode(&digest[..12]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for KeyId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// Castellum's X25519 recipient key (private). Opens requests sealed to it.
pub struct RecipientKey {
    /// The 32 bytes as the file holds them (unclamped, as openssl writes
    /// them), kept to write the same file back.
    raw: Zeroizing<[u8; 32]>,
    secret: HpkePrivate,
    public: RecipientPublic,
}

impl RecipientKey {
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Result<RecipientKey, KeyError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(raw.as_mut())
            .map_err(|_| KeyError::Random)?;
        Ok(RecipientKey::from_raw(raw))
    }

    pub(crate) fn from_raw(raw: Zeroizing<[u8; 32]>) -> RecipientKey {
        let secret = HpkePrivate::from_bytes(raw.as_ref()).expect("32 bytes are an X25519 key");
        let public = Kem::sk_to_pk(&secret);
        let bytes: [u8; 32] = hpke::Serializable::to_bytes(&public).into();
        RecipientKey {
            raw,
            secret,
            public: RecipientPublic::from_raw(bytes),
        }
    }

    pub fn from_pem(pem: &str) -> Result<RecipientKey, KeyError> {
        let (raw, embedded) = decode_private(pem, Algorithm::X25519)?;
        let key = RecipientKey::from_raw(raw);
        if embedded.is_some_and(|public| public != key.public.raw) {
            return Err(KeyError::PublicKeyMismatch);
        }
        Ok(key)
    }

    /// Read a PEM file (`openssl genpkey -algorithm X25519`).
    pub fn read(path: &Path) -> Result<RecipientKey, KeyError> {
        let text = read_key_file(path)?;
        RecipientKey::from_pem(&text).map_err(|e| e.in_file(path))
    }

    /// The PKCS#8 PEM openssl would write for this key.
    pub fn to_pem(&self) -> Zeroizing<String> {
        encode_private(Algorithm::X25519, &self.raw)
    }

    pub fn public(&self) -> &RecipientPublic {
        &self.public
    }

    pub fn kid(&self) -> &KeyId {
        &self.public.kid
    }

    pub(crate) fn hpke(&self) -> &HpkePrivate {
        &self.secret
    }
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

/// Castellum's X25519 public key, pinned by the scheduler.
#[derive(Clone)]
pub struct RecipientPublic {
    raw: [u8; 32],
    key: HpkePublic,
    kid: KeyId,
}

impl RecipientPublic {
    pub(crate) fn from_raw(raw: [u8; 32]) -> RecipientPublic {
        RecipientPublic {
            raw,
            key: HpkePublic::from_bytes(&raw).expect("32 bytes are an X25519 public key"),
            kid: KeyId::of(&raw),
        }
    }

    pub fn from_pem(pem: &str) -> Result<RecipientPublic, KeyError> {
        Ok(RecipientPublic::from_raw(decode_public(
            pem,
            Algorithm::X25519,
        )?))
    }

    /// Read a PEM file (`openssl pkey -pubout`).
    pub fn read(path: &Path) -> Result<RecipientPublic, KeyError> {
        let text = read_key_file(path)?;
        RecipientPublic::from_pem(&text).map_err(|e| e.in_file(path))
    }

    pub fn to_pem(&self) -> String {
        encode_public(Algorithm::X25519, &self.raw)
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.raw
    }

    pub(crate) fn hpke(&self) -> &HpkePublic {
        &self.key
    }
}

impl fmt::Debug for RecipientPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientPublic")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The scheduler's Ed25519 signing key (private).
pub struct SigningKey {
    key: EdSigningKey,
    public: SignerPublic,
}

impl SigningKey {
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|_| KeyError::Random)?;
        Ok(SigningKey::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; 32]) -> SigningKey {
        let key = EdSigningKey::from_bytes(seed);
        let public = SignerPublic::from_verifying(key.verifying_key());
        SigningKey { key, public }
    }

    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let (seed, embedded) = decode_private(pem, Algorithm::Ed25519)?;
        let key = SigningKey::from_seed(&seed);
        if embedded.is_some_and(|public| &public != key.public.key.as_bytes()) {
            return Err(KeyError::PublicKeyMismatch);
        }
        Ok(key)
    }

    /// Read a PEM file (`openssl genpkey -algorithm ed25519`).
    pub fn read(path: &Path) -> Result<SigningKey, KeyError> {
        let text = read_key_file(path)?;
        SigningKey::from_pem(&text).map_err(|e| e.in_file(path))
    }

    /// The PKCS#8 PEM openssl would write for this key.
    pub fn to_pem(&self) -> Zeroizing<String> {
        encode_private(Algorithm::Ed25519, &Zeroizing::new(self.key.to_bytes()))
    }

    pub fn public(&self) -> &SignerPublic {
        &self.public
    }

    pub fn kid(&self) -> &KeyId {
        &self.public.kid
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

/// The scheduler's Ed25519 public key, pinned by the agent (and the broker's
/// door).
#[derive(Clone)]
pub struct SignerPublic {
    key: VerifyingKey,
    kid: KeyId,
}

impl SignerPublic {
    fn from_verifying(key: VerifyingKey) -> SignerPublic {
        SignerPublic {
            kid: KeyId::of(key.as_bytes()),
            key,
        }
    }

    pub fn from_pem(pem: &str) -> Result<SignerPublic, KeyError> {
        let raw = decode_public(pem, Algorithm::Ed25519)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Malformed("Ed25519"))?;
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(SignerPublic::from_verifying(key))
    }

    /// Read a PEM file (`openssl pkey -pubout`).
    pub fn read(path: &Path) -> Result<SignerPublic, KeyError> {
        let text = read_key_file(path)?;
        SignerPublic::from_pem(&text).map_err(|e| e.in_file(path))
    }

    pub fn to_pem(&self) -> String {
        encode_public(Algorithm::Ed25519, self.key.as_bytes())
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Strict verification (RFC 8032 with canonical encodings, no
    /// small-order points), as `ed25519-dalek`'s `verify_strict`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for SignerPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerPublic")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Any one of the four key files, for `backchannel keys id FILE`.
#[derive(Debug)]
pub enum KeyFile {
    RecipientKey(Box<RecipientKey>),
    RecipientPublic(RecipientPublic),
    SigningKey(Box<SigningKey>),
    SignerPublic(SignerPublic),
}

impl KeyFile {
    pub fn from_pem(pem: &str) -> Result<KeyFile, KeyError> {
        match pem_label(pem)? {
            PRIVATE_LABEL => match private_algorithm(pem)? {
                Algorithm::X25519 => {
                    RecipientKey::from_pem(pem).map(|k| KeyFile::RecipientKey(Box::new(k)))
                }
                Algorithm::Ed25519 => {
                    SigningKey::from_pem(pem).map(|k| KeyFile::SigningKey(Box::new(k)))
                }
            },
            PUBLIC_LABEL => match public_algorithm(pem)? {
                Algorithm::X25519 => RecipientPublic::from_pem(pem).map(KeyFile::RecipientPublic),
                Algorithm::Ed25519 => SignerPublic::from_pem(pem).map(KeyFile::SignerPublic),
            },
            _ => Err(KeyError::NotPem),
        }
    }

    pub fn read(path: &Path) -> Result<KeyFile, KeyError> {
        let text = read_key_file(path)?;
        KeyFile::from_pem(&text).map_err(|e| e.in_file(path))
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            KeyFile::RecipientKey(_) | KeyFile::RecipientPublic(_) => Algorithm::X25519,
            KeyFile::SigningKey(_) | KeyFile::SignerPublic(_) => Algorithm::Ed25519,
        }
    }

    pub fn is_private(&self) -> bool {
        matches!(self, KeyFile::RecipientKey(_) | KeyFile::SigningKey(_))
    }

    /// The key id (of the public half, for a private key).
    pub fn kid(&self) -> &KeyId {
        match self {
            KeyFile::RecipientKey(k) => k.kid(),
            KeyFile::RecipientPublic(k) => k.kid(),
            KeyFile::SigningKey(k) => k.kid(),
            KeyFile::SignerPublic(k) => k.kid(),
        }
    }

    /// The public key's PEM (itself, for a public key).
    pub fn public_pem(&self) -> String {
        match self {
            KeyFile::RecipientKey(k) => k.public().to_pem(),
            KeyFile::RecipientPublic(k) => k.to_pem(),
            KeyFile::SigningKey(k) => k.public().to_pem(),
            KeyFile::SignerPublic(k) => k.to_pem(),
        }
    }
}

/// A new key pair written as `PREFIX.key` (PKCS#8, created with mode 0600)
/// and `PREFIX.pub` (SubjectPublicKeyInfo, 0644), as openssl writes them. An
/// existing file is never overwritten. Returns the key id.
pub fn write_new_pair(algorithm: Algorithm, prefix: &Path) -> Result<KeyId, KeyError> {
    let (private, public, kid) = match algorithm {
        Algorithm::X25519 => {
            let key = RecipientKey::generate()?;
            (key.to_pem(), key.public().to_pem(), key.kid().clone())
        }
        Algorithm::Ed25519 => {
            let key = SigningKey::generate()?;
            (key.to_pem(), key.public().to_pem(), key.kid().clone())
        }
    };
    let private_path = with_suffix(prefix, ".key");
    let public_path = with_suffix(prefix, ".pub");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    write_new_file(&private_path, private.as_bytes(), 0o600)?;
    write_new_file(&public_path, public.as_bytes(), 0o644)?;
    Ok(kid)
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(source)
            }
        })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read_key_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    use std::io::Read;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = Zeroizing::new(String::new());
    // Read at most one byte past the limit, to know it was passed.
    let read = file
        .take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if read as u64 > MAX_KEY_FILE {
        return Err(KeyError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// The label of the first PEM block (`PRIVATE KEY`, `PUBLIC KEY`, ...).
fn pem_label(pem: &str) -> Result<&str, KeyError> {
    let start = pem.find("-----BEGIN ").ok_or(KeyError::NotPem)? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----").ok_or(KeyError::NotPem)?;
    Ok(&rest[..end])
}

fn check_label(found: &str, expected: &'static str) -> Result<(), KeyError> {
    if found == expected {
        Ok(())
    } else if found == "ENCRYPTED PRIVATE KEY" {
        Err(KeyError::Encrypted)
    } else {
        Err(KeyError::WrongLabel {
            expected,
            found: if found.len() <= 40 && found.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            {
                found.to_string()
            } else {
                "PEM block of another kind".to_string()
            },
        })
    }
}

fn private_document(pem: &str) -> Result<SecretDocument, KeyError> {
    check_label(pem_label(pem)?, PRIVATE_LABEL)?;
    let (label, document) = SecretDocument::from_pem(pem).map_err(|_| KeyError::NotPem)?;
    check_label(label, PRIVATE_LABEL)?;
    Ok(document)
}

fn public_document(pem: &str) -> Result<Document, KeyError> {
    check_label(pem_label(pem)?, PUBLIC_LABEL)?;
    let (label, document) = Document::from_pem(pem).map_err(|_| KeyError::NotPem)?;
    check_label(label, PUBLIC_LABEL)?;
    Ok(document)
}

fn private_algorithm(pem: &str) -> Result<Algorithm, KeyError> {
    let document = private_document(pem)?;
    let info = PrivateKeyInfoRef::try_from(document.as_bytes())
        .map_err(|_| KeyError::Malformed("PKCS#8"))?;
    Algorithm::from_oid(info.algorithm.oid).ok_or(KeyError::UnknownAlgorithm)
}

fn public_algorithm(pem: &str) -> Result<Algorithm, KeyError> {
    let document = public_document(pem)?;
    let info = SubjectPublicKeyInfoRef::try_from(document.as_bytes())
        .map_err(|_| KeyError::Malformed("SubjectPublicKeyInfo"))?;
    Algorithm::from_oid(info.algorithm.oid).ok_or(KeyError::UnknownAlgorithm)
}

fn check_algorithm(
    algorithm: &AlgorithmIdentifierRef<'_>,
    expected: Algorithm,
) -> Result<(), KeyError> {
    let found = Algorithm::from_oid(algorithm.oid).ok_or(KeyError::UnknownAlgorithm)?;
    if found != expected {
        return Err(KeyError::WrongAlgorithm { expected, found });
    }
    // RFC 8410: the parameters are absent for both algorithms.
    if algorithm.parameters.is_some() {
        return Err(KeyError::Malformed(expected.name()));
    }
    Ok(())
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::X25519 => "X25519",
            Algorithm::Ed25519 => "Ed25519",
        }
    }
}

/// The 32 private bytes of an RFC 8410 PKCS#8 key (the `privateKey` OCTET
/// STRING holds a `CurvePrivateKey` OCTET STRING of 32 bytes), and the public
/// key a v2 file carries beside them.
type PrivateBytes = (Zeroizing<[u8; 32]>, Option<[u8; 32]>);

fn decode_private(pem: &str, expected: Algorithm) -> Result<PrivateBytes, KeyError> {
    let document = private_document(pem)?;
    let info = PrivateKeyInfoRef::try_from(document.as_bytes())
        .map_err(|_| KeyError::Malformed("PKCS#8"))?;
    check_algorithm(&info.algorithm, expected)?;
    let malformed = || KeyError::Malformed(expected.name());
    let mut raw = Zeroizing::new([0u8; 32]);
    match info.private_key.as_bytes() {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => raw.copy_from_slice(rest),
        _ => return Err(malformed()),
    }
    let public = match info.public_key {
        None => None,
        Some(bits) => {
            let bytes = bits.as_bytes().ok_or_else(malformed)?;
            Some(<[u8; 32]>::try_from(bytes).map_err(|_| malformed())?)
        }
    };
    Ok((raw, public))
}

fn decode_public(pem: &str, expected: Algorithm) -> Result<[u8; 32], KeyError> {
    let document = public_document(pem)?;
    let info = SubjectPublicKeyInfoRef::try_from(document.as_bytes())
        .map_err(|_| KeyError::Malformed("SubjectPublicKeyInfo"))?;
    check_algorithm(&info.algorithm, expected)?;
    let bytes = info
        .subject_public_key
        .as_bytes()
        .ok_or(KeyError::Malformed(expected.name()))?;
    <[u8; 32]>::try_from(bytes).map_err(|_| KeyError::Malformed(expected.name()))
}

fn encode_private(algorithm: Algorithm, raw: &Zeroizing<[u8; 32]>) -> Zeroizing<String> {
    let mut inner = Zeroizing::new([0u8; 34]);
    inner[0] = 0x04;
    inner[1] = 0x20;
    inner[2..].copy_from_slice(raw.as_ref());
    let info = PrivateKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: algorithm.oid(),
            parameters: None,
        },
        private_key: OctetStringRef::new(inner.as_ref()).expect("34 bytes fit an OCTET STRING"),
        public_key: None,
    };
    let document = SecretDocument::encode_msg(&info).expect("a PKCS#8 key encodes");
    document
        .to_pem(PRIVATE_LABEL, LineEnding::LF)
        .expect("a PKCS#8 key encodes as PEM")
}

fn encode_public(algorithm: Algorithm, raw: &[u8; 32]) -> String {
    let info = SubjectPublicKeyInfoRef {
        algorithm: AlgorithmIdentifierRef {
            oid: algorithm.oid(),
            parameters: None,
        },
        subject_public_key: BitStringRef::new(0, raw).expect("32 bytes fit a BIT STRING"),
    };
    let document = Document::encode_msg(&info).expect("a public key encodes");
    document
        .to_pem(PUBLIC_LABEL, LineEnding::LF)
        .expect("a public key encodes as PEM")
}
