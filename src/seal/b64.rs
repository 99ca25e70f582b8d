//! base64url without padding (RFC 4648 §5), strictly: no `=`, no characters of
//! the standard alphabet (`+`, `/`), no whitespace, and no non-canonical last
//! character (unused trailing bits must be zero). `base64ct` decodes in
//! constant time, which matters for the handle (it carries a secret).

use base64ct::{Base64UrlUnpadded, Encoding};

/// `bytes` as base64url without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// Decode `text`, refusing anything that would decode to more than `max` bytes
/// before decoding it.
pub(crate) fn decode(text: &str, max: usize) -> Option<Vec<u8>> {
    if text.len() > encoded_len(max) {
        return None;
    }
    Base64UrlUnpadded::decode_vec(text).ok()
}

/// Decode `text` into exactly `N` bytes: a longer or shorter value is refused.
pub(crate) fn decode_exact<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != encoded_len(N) {
        return None;
    }
    let mut out = [0u8; N];
    let decoded = Base64UrlUnpadded::decode(text, &mut out).ok()?.len();
    (decoded == N).then_some(out)
}

/// How many characters `n` bytes take without padding (saturating).
pub(crate) const fn encoded_len(n: usize) -> usize {
    n.saturating_mul(4).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_every_length_up_to_40() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            let text = encode(&bytes);
            assert_eq!(text.len(), encoded_len(n));
            assert_eq!(decode(&text, n).as_deref(), Some(&bytes[..]));
        }
    }

    #[test]
    fn strictness() {
        // 16 bytes 0..15 (the vector's `ref`).
        let good = "AAECAwQFBgcICQoLDA0ODw";
        assert!(decode_exact::<16>(good).is_some());
        // Padding, standard alphabet, whitespace, a non-canonical last character.
        for bad in [
            "AAECAwQFBgcICQoLDA0ODw==",
            "AAECAwQFBgcICQoLDA0OD+",
            "AAECAwQFBgcICQoLDA0OD/",
            "AAECAwQFBgcICQoLDA0OD w",
            " AAECAwQFBgcICQoLDA0ODw",
            "AAECAwQFBgcICQoLDA0ODx",
        ] {
            assert!(decode_exact::<16>(bad).is_none(), "{bad:?} was accepted");
            assert!(decode(bad, 64).is_none(), "{bad:?} was accepted");
        }
        // Valid base64url, but not of 16 bytes.
        for wrong_length in ["AAECAwQFBgcICQoLDA0OD", "AAECAwQFBgcICQoLDA0ODwA", ""] {
            assert!(
                decode_exact::<16>(wrong_length).is_none(),
                "{wrong_length:?}"
            );
        }
        // Too long for the limit.
        assert!(decode(good, 15).is_none());
        assert!(decode("", 0).is_some_and(|v| v.is_empty()));
    }
}
