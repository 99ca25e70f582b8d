//! RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20Poly1305 in base mode, run through the `hpke` crate exactly as
//! sealed/v1 calls it (the ephemeral key from 32 bytes of "randomness", as
//! the request's sealing does), and through this module's key type.

use hpke::{Deserializable, Kem as _, Serializable};

use super::*;

const RFC: &str = include_str!("../testdata/rfc9180-x25519-sha256-chacha20poly1305-base.json");

type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;
type PrivateKey = <Kem as hpke::Kem>::PrivateKey;

fn field(v: &Value, name: &str) -> Vec<u8> {
    hex(v[name].as_str().unwrap_or_else(|| panic!("{name} missing")))
}

#[test]
fn rfc9180_base_mode_x25519_sha256_chacha20poly1305() {
    let v: Value = serde_json::from_str(RFC).unwrap();
    assert_eq!(
        (
            v["mode"].as_u64(),
            v["kem_id"].as_u64(),
            v["kdf_id"].as_u64(),
            v["aead_id"].as_u64()
        ),
        (Some(0), Some(0x20), Some(1), Some(3))
    );
    let info = field(&v, "info");

    // DeriveKeyPair reproduces both key pairs (private keys compare clamped,
    // as RFC 9180 §7.1.2 serialises them).
    let (sk_r, pk_r) = Kem::derive_keypair(&field(&v, "ikmR"));
    assert_eq!(pk_r.to_bytes().to_vec(), field(&v, "pkRm"));
    assert!(sk_r == PrivateKey::from_bytes(&field(&v, "skRm")).unwrap());
    let (sk_e, pk_e) = Kem::derive_keypair(&field(&v, "ikmE"));
    assert_eq!(pk_e.to_bytes().to_vec(), field(&v, "pkEm"));
    assert!(sk_e == PrivateKey::from_bytes(&field(&v, "skEm")).unwrap());

    // This module's key type reads the same private key to the same public key.
    let raw: [u8; 32] = field(&v, "skRm").try_into().unwrap();
    let recipient = RecipientKey::from_raw(zeroize::Zeroizing::new(raw));
    assert_eq!(recipient.public().as_bytes().to_vec(), field(&v, "pkRm"));

    // Encapsulation with ikmE as the sender's randomness gives the vector's enc.
    let ikm_e: [u8; 32] = field(&v, "ikmE").try_into().unwrap();
    let (enc, mut sender) = hpke::setup_sender_with_rng::<Aead, Kdf, Kem>(
        &hpke::OpModeS::Base,
        recipient.public().hpke(),
        &info,
        &mut Ikm(Some(&ikm_e)),
    )
    .unwrap();
    assert_eq!(enc.to_bytes().to_vec(), field(&v, "enc"));
    let mut receiver =
        hpke::setup_receiver::<Aead, Kdf, Kem>(&hpke::OpModeR::Base, recipient.hpke(), &enc, &info)
            .unwrap();

    // Every encryption, at its sequence number (the ones between are sealed
    // and opened with other data to advance both contexts).
    let encryptions = v["encryptions"].as_array().unwrap();
    assert_eq!(encryptions.len(), 6);
    let mut checked = 0;
    for seq in 0..=256u64 {
        match encryptions.iter().find(|e| e["seq"].as_u64() == Some(seq)) {
            Some(e) => {
                let (pt, aad) = (field(e, "pt"), field(e, "aad"));
                let ct = sender.seal(&pt, &aad).unwrap();
                assert_eq!(ct, field(e, "ct"), "ct at sequence number {seq}");
                assert_eq!(receiver.open(&ct, &aad).unwrap(), pt, "pt at {seq}");
                checked += 1;
            }
            None => {
                let ct = sender.seal(b"filler", b"").unwrap();
                assert_eq!(receiver.open(&ct, b"").unwrap(), b"filler");
            }
        }
    }
    assert_eq!(checked, 6);

    // Every exported value, from both sides.
    let exports = v["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 3);
    for e in exports {
        let context = field(e, "exporter_context");
        let length = e["L"].as_u64().unwrap() as usize;
        let mut from_sender = vec![0u8; length];
        let mut from_receiver = vec![0u8; length];
        sender.export(&context, &mut from_sender).unwrap();
        receiver.export(&context, &mut from_receiver).unwrap();
        assert_eq!(from_sender, field(e, "exported_value"));
        assert_eq!(from_receiver, field(e, "exported_value"));
    }
}
