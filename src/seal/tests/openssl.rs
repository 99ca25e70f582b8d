//! Keys made by the real `openssl` binary (a test dependency, installed by
//! scripts/test-deps.sh), and keys this module writes read back by it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// A directory of its own, removed afterwards.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let path = std::env::temp_dir().join(format!("backchannel-seal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&path).unwrap();
        Dir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl binary (scripts/test-deps.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `openssl genpkey` and `openssl pkey -pubout`: (private file, public file).
fn openssl_pair(dir: &Dir, algorithm: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(&format!("{algorithm}.key"));
    let public = dir.join(&format!("{algorithm}.pub"));
    openssl(&["genpkey", "-algorithm", algorithm, "-out", path(&key)]);
    openssl(&["pkey", "-in", path(&key), "-pubout", "-out", path(&public)]);
    (key, public)
}

/// The raw 32-byte public key, as openssl's DER holds it.
fn raw_public(public: &Path) -> [u8; 32] {
    let der = openssl(&["pkey", "-pubin", "-in", path(public), "-outform", "DER"]);
    der[der.len() - 32..].try_into().unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn keys_made_by_openssl_are_read_and_written_back_identically() {
    let dir = Dir::new();
    let (x_key, x_pub) = openssl_pair(&dir, "X25519");
    let (e_key, e_pub) = openssl_pair(&dir, "ed25519");

    let recipient = RecipientKey::read(&x_key).unwrap();
    let recipient_public = RecipientPublic::read(&x_pub).unwrap();
    assert_eq!(recipient.public().as_bytes(), &raw_public(&x_pub));
    assert_eq!(recipient_public.as_bytes(), &raw_public(&x_pub));
    assert_eq!(recipient.kid(), &KeyId::of(&raw_public(&x_pub)));
    assert_eq!(recipient_public.kid(), recipient.kid());
    assert_eq!(recipient.kid().as_str().len(), 16);
    assert_eq!(recipient.to_pem().as_str(), read(&x_key));
    assert_eq!(recipient.public().to_pem(), read(&x_pub));
    assert_eq!(recipient_public.to_pem(), read(&x_pub));

    let signing = SigningKey::read(&e_key).unwrap();
    let signer = SignerPublic::read(&e_pub).unwrap();
    assert_eq!(signing.public().as_bytes(), &raw_public(&e_pub));
    assert_eq!(signer.kid(), &KeyId::of(&raw_public(&e_pub)));
    assert_eq!(signing.kid(), signer.kid());
    assert_eq!(signing.to_pem().as_str(), read(&e_key));
    assert_eq!(signer.to_pem(), read(&e_pub));

    for (file, kid, private) in [
        (&x_key, recipient.kid(), true),
        (&x_pub, recipient.kid(), false),
        (&e_key, signer.kid(), true),
        (&e_pub, signer.kid(), false),
    ] {
        let key = KeyFile::read(file).unwrap();
        assert_eq!(key.kid(), kid);
        assert_eq!(key.is_private(), private);
    }
    assert_eq!(KeyFile::read(&x_key).unwrap().public_pem(), read(&x_pub));
}

#[test]
fn keys_written_here_are_read_by_openssl_and_the_private_file_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    for algorithm in [Algorithm::X25519, Algorithm::Ed25519] {
        let prefix = dir.join(algorithm.as_str());
        let kid = write_new_pair(algorithm, &prefix).unwrap();
        let key = dir.join(&format!("{}.key", algorithm.as_str()));
        let public = dir.join(&format!("{}.pub", algorithm.as_str()));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // openssl derives the same public key file from the private one.
        let derived = openssl(&["pkey", "-in", path(&key), "-pubout"]);
        assert_eq!(String::from_utf8(derived).unwrap(), read(&public));
        assert_eq!(KeyId::of(&raw_public(&public)), kid);
        assert_eq!(KeyFile::read(&key).unwrap().kid(), &kid);
        // Never overwritten.
        assert!(matches!(
            write_new_pair(algorithm, &prefix),
            Err(KeyError::Exists { .. })
        ));
    }
}

#[test]
fn a_request_sealed_with_openssl_keys_opens_and_its_signature_is_openssls() {
    let dir = Dir::new();
    let (x_key, x_pub) = openssl_pair(&dir, "X25519");
    let (e_key, e_pub) = openssl_pair(&dir, "ed25519");
    let sealer = Sealer::from_files(&e_key, &x_pub).unwrap();
    let opener = Opener::new(Keyring::from_files(&[x_key], std::slice::from_ref(&e_pub)).unwrap());
    let now = 1_796_000_000;
    let sealed = sealer
        .seal(
            KIND,
            &json!({"q": "Grüße"}),
            std::time::Duration::from_secs(30),
            now,
        )
        .unwrap();
    let text = sealed.envelope.to_string();
    let opened = opened(opener.open(
        Delivery {
            id: 77,
            kind: KIND,
            payload: &text,
        },
        now,
    ));
    assert_eq!(opened.payload.get(), r#"{"q":"Grüße"}"#);
    let answer = opened
        .responder
        .seal(Outcome::Done, &json!({"a": 1}))
        .unwrap();
    assert_eq!(
        sealed.answer_key.open(77, Outcome::Done, &answer),
        Ok(json!({"a": 1}))
    );

    // Ed25519 is deterministic: openssl signs the same bytes to the same
    // signature, and verifies ours.
    let parts = Parts::of(&sealed.envelope);
    let enc: [u8; 32] = parts.enc.clone().try_into().unwrap();
    let message = dir.join("signed.bin");
    std::fs::write(&message, signed_bytes(&parts.h, &enc, &parts.ct)).unwrap();
    let signature = openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        path(&e_key),
        "-rawin",
        "-in",
        path(&message),
    ]);
    assert_eq!(signature, parts.sig);
    let sig_file = dir.join("sig.bin");
    std::fs::write(&sig_file, &parts.sig).unwrap();
    openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        path(&e_pub),
        "-rawin",
        "-in",
        path(&message),
        "-sigfile",
        path(&sig_file),
    ]);
}

#[test]
fn wrong_or_broken_key_files_get_clear_errors_without_key_bytes() {
    let dir = Dir::new();
    let (x_key, x_pub) = openssl_pair(&dir, "X25519");
    let (e_key, _) = openssl_pair(&dir, "ed25519");
    let ec_key = dir.join("ec.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path(&ec_key),
    ]);
    let encrypted = dir.join("encrypted.key");
    openssl(&[
        "pkey",
        "-in",
        path(&e_key),
        "-aes256",
        "-passout",
        "pass:secret",
        "-out",
        path(&encrypted),
    ]);
    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let truncated = dir.join("truncated.key");
    let text = read(&x_key);
    std::fs::write(&truncated, text.replacen("MC4C", "MC4D", 1)).unwrap();
    let huge = dir.join("huge.key");
    std::fs::write(&huge, "A".repeat(100_000)).unwrap();
    let missing = dir.join("missing.key");

    let cases: Vec<(KeyError, &str)> = vec![
        (
            SigningKey::read(&x_key).unwrap_err(),
            "an X25519 key where an Ed25519 key",
        ),
        (
            RecipientKey::read(&e_key).unwrap_err(),
            "an Ed25519 key where an X25519 key",
        ),
        (
            RecipientKey::read(&x_pub).unwrap_err(),
            "PUBLIC KEY where a PRIVATE KEY",
        ),
        (
            SignerPublic::read(&x_key).unwrap_err(),
            "PRIVATE KEY where a PUBLIC KEY",
        ),
        (
            RecipientKey::read(&ec_key).unwrap_err(),
            "not an X25519 or Ed25519 key",
        ),
        (SigningKey::read(&encrypted).unwrap_err(), "encrypted"),
        (RecipientKey::read(&garbage).unwrap_err(), "not a PEM key"),
        (RecipientKey::read(&truncated).unwrap_err(), "malformed"),
        (
            RecipientKey::read(&huge).unwrap_err(),
            "larger than a key file",
        ),
        (RecipientKey::read(&missing).unwrap_err(), "No such file"),
    ];
    let secrets: Vec<String> = [read(&x_key), read(&e_key)]
        .iter()
        .flat_map(|pem| secret_renderings(pem))
        .collect();
    for (error, expected) in cases {
        let message = error.to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert!(
            message.contains(dir.0.to_str().unwrap()),
            "{message:?} names no file"
        );
        for secret in &secrets {
            assert!(!message.contains(secret.as_str()), "{message:?}");
        }
    }
    // Debug output of keys shows the id, never key bytes.
    let recipient = RecipientKey::read(&x_key).unwrap();
    let signing = SigningKey::read(&e_key).unwrap();
    let keyring = Keyring::new(vec![RecipientKey::read(&x_key).unwrap()], vec![]);
    for debug in [
        format!("{recipient:?}"),
        format!("{signing:?}"),
        format!("{keyring:?}"),
    ] {
        assert!(debug.contains("kid"), "{debug}");
        for secret in &secrets {
            assert!(!debug.contains(secret.as_str()), "{debug}");
        }
    }
}

/// The ways a private key's bytes could show in text: its PEM body, its 32
/// bytes in hex, base64, base64url, and as Rust prints a byte array.
fn secret_renderings(pem: &str) -> Vec<String> {
    use base64ct::{Base64, Base64UrlUnpadded, Encoding};
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = Base64::decode_vec(&body).unwrap();
    let raw = &der[der.len() - 32..];
    let debug = format!("{raw:?}");
    vec![
        body,
        raw.iter().map(|b| format!("{b:02x}")).collect(),
        Base64::encode_string(raw)[..20].to_string(),
        Base64UrlUnpadded::encode_string(raw)[..20].to_string(),
        debug[..debug.len() / 2].to_string(),
    ]
}
