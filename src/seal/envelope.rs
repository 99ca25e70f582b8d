//! The JSON envelopes of SEALED.md and the headers inside them: what makes a
//! payload sealed, and the strict parsing of a request and an answer.
//!
//! **Sealed or plain.** A payload (or an answer) is *sealed* when it is a JSON
//! object with a member named `sealed`, whatever that member's value. It is
//! then held to the exact form: `"sealed":"bc1"` and exactly the other
//! members of its kind, each a string, or it is refused as `seal_malformed`.
//! So a near miss (`"sealed":"bc2"`, `"sealed":true`, a missing `sig`, an
//! extra member) is never mistaken for a plain payload and handed to the
//! handler. Anything else (an object without `sealed`, an array, a string,
//! ...) is plain.
//!
//! **Headers.** The request header `h` and the answer header `rh` are JSON
//! objects carried as base64url of their exact bytes. They are parsed
//! strictly: an object (not an array), each known member exactly once, no
//! other member, the right JSON types (`v`, `iat`, `exp`, `job` integers,
//! never `1.0`), at most 1024 bytes. Whitespace inside the JSON is allowed
//! (another implementation may write `{"v": 1, ...}`); the signature and the
//! AEAD cover the exact bytes either way.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::refusal::Refusal;
use super::{MARKER, MAX_HEADER, Outcome, SUITE, b64};

/// Whether a payload or an answer is sealed (see the module's docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Plain,
    Sealed,
}

/// Sealed when `value` is an object with a `sealed` member.
pub fn form(value: &Value) -> Form {
    match value {
        Value::Object(map) if map.contains_key("sealed") => Form::Sealed,
        _ => Form::Plain,
    }
}

/// The request header `h`, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeader {
    pub v: u64,
    pub suite: String,
    pub rkid: String,
    pub skid: String,
    pub ch: String,
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub iat: u64,
    pub exp: u64,
}

impl RequestHeader {
    /// The header's bytes: compact JSON, members in SEALED.md's order.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a header serialises")
    }

    fn parse(bytes: &[u8]) -> Result<RequestHeader, Refusal> {
        let header: RequestHeader = parse_object(bytes)
            .map_err(|what| Refusal::malformed(format!("the header is not well-formed: {what}")))?;
        if header.v != 1 {
            return Err(Refusal::malformed("the header's version is not 1"));
        }
        if header.suite != SUITE {
            return Err(Refusal::malformed(format!(
                "the header's suite is not {SUITE}"
            )));
        }
        let kid_ok = |kid: &str| b64::decode_exact::<12>(kid).is_some();
        if !kid_ok(&header.rkid) || !kid_ok(&header.skid) {
            return Err(Refusal::malformed(
                "the header's rkid or skid is not a key id (16 base64url characters)",
            ));
        }
        if b64::decode_exact::<16>(&header.reference).is_none() {
            return Err(Refusal::malformed(
                "the header's ref is not 16 bytes of base64url",
            ));
        }
        if header.ch.is_empty() || header.kind.is_empty() {
            return Err(Refusal::malformed("the header's ch or kind is empty"));
        }
        if header.exp < header.iat {
            return Err(Refusal::malformed("the header's exp is before its iat"));
        }
        Ok(header)
    }
}

/// A well-formed sealed request, decoded (nothing checked yet but its form).
#[derive(Debug, Clone)]
pub(crate) struct RequestEnvelope {
    /// The header's exact bytes, as signed.
    pub h: Vec<u8>,
    pub header: RequestHeader,
    pub enc: [u8; 32],
    pub ct: Vec<u8>,
    pub sig: [u8; 64],
}

impl RequestEnvelope {
    /// Parse a payload already known to be [`Form::Sealed`].
    pub fn parse(value: &Value) -> Result<RequestEnvelope, Refusal> {
        let members = sealed_members(value, &["h", "enc", "ct", "sig"])?;
        let [h, enc, ct, sig] = members;
        let h = b64::decode(h, MAX_HEADER).ok_or_else(|| {
            Refusal::malformed(format!("h is not base64url of at most {MAX_HEADER} bytes"))
        })?;
        let header = RequestHeader::parse(&h)?;
        let enc = b64::decode_exact::<32>(enc)
            .ok_or_else(|| Refusal::malformed("enc is not 32 bytes of base64url"))?;
        let ct =
            b64::decode(ct, usize::MAX).ok_or_else(|| Refusal::malformed("ct is not base64url"))?;
        let sig = b64::decode_exact::<64>(sig)
            .ok_or_else(|| Refusal::malformed("sig is not 64 bytes of base64url"))?;
        Ok(RequestEnvelope {
            h,
            header,
            enc,
            ct,
            sig,
        })
    }

    /// The envelope's JSON object, members in SEALED.md's order.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("sealed".into(), MARKER.into());
        map.insert("h".into(), b64::encode(&self.h).into());
        map.insert("enc".into(), b64::encode(&self.enc).into());
        map.insert("ct".into(), b64::encode(&self.ct).into());
        map.insert("sig".into(), b64::encode(&self.sig).into());
        Value::Object(map)
    }
}

/// The answer header `rh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerHeader {
    pub v: u64,
    #[serde(rename = "ref")]
    pub reference: String,
    pub job: i64,
    pub outcome: String,
}

impl AnswerHeader {
    pub(crate) fn new(reference: &str, job: i64, outcome: Outcome) -> AnswerHeader {
        AnswerHeader {
            v: 1,
            reference: reference.to_string(),
            job,
            outcome: outcome.as_str().to_string(),
        }
    }

    /// `{"v":1,"ref":...,"job":...,"outcome":...}`: compact, in this order.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a header serialises")
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<AnswerHeader, String> {
        let header: AnswerHeader = parse_object(bytes)?;
        if header.v != 1 {
            return Err("the answer header's version is not 1".into());
        }
        if Outcome::parse(&header.outcome).is_none() {
            return Err("the answer header's outcome is neither done nor failed".into());
        }
        Ok(header)
    }
}

/// A well-formed sealed answer, decoded.
#[derive(Debug, Clone)]
pub(crate) struct AnswerEnvelope {
    pub h: Vec<u8>,
    pub rn: [u8; 32],
    pub ct: Vec<u8>,
}

impl AnswerEnvelope {
    pub fn parse(value: &Value) -> Result<AnswerEnvelope, String> {
        let [h, rn, ct] = sealed_members(value, &["h", "rn", "ct"]).map_err(|r| r.message)?;
        let h = b64::decode(h, MAX_HEADER)
            .ok_or_else(|| format!("h is not base64url of at most {MAX_HEADER} bytes"))?;
        let rn = b64::decode_exact::<32>(rn).ok_or("rn is not 32 bytes of base64url")?;
        let ct = b64::decode(ct, usize::MAX).ok_or("ct is not base64url")?;
        Ok(AnswerEnvelope { h, rn, ct })
    }

    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("sealed".into(), MARKER.into());
        map.insert("h".into(), b64::encode(&self.h).into());
        map.insert("rn".into(), b64::encode(&self.rn).into());
        map.insert("ct".into(), b64::encode(&self.ct).into());
        Value::Object(map)
    }
}

/// The string members `names` of a sealed envelope: `"sealed":"bc1"` and
/// exactly these members besides, each a string.
fn sealed_members<'a, const N: usize>(
    value: &'a Value,
    names: &[&str; N],
) -> Result<[&'a str; N], Refusal> {
    let Some(map) = value.as_object() else {
        return Err(Refusal::malformed("a sealed envelope is a JSON object"));
    };
    match map.get("sealed") {
        Some(Value::String(marker)) if marker == MARKER => {}
        _ => {
            return Err(Refusal::malformed(format!(
                "\"sealed\" is not \"{MARKER}\" (the only version known)"
            )));
        }
    }
    if map.len() != N + 1 {
        return Err(Refusal::malformed(format!(
            "a sealed envelope has exactly the members sealed, {}",
            names.join(", ")
        )));
    }
    let mut out = [""; N];
    for (slot, name) in out.iter_mut().zip(names) {
        match map.get(*name) {
            Some(Value::String(text)) => *slot = text,
            _ => {
                return Err(Refusal::malformed(format!(
                    "a sealed envelope has exactly the members sealed, {} (each a string)",
                    names.join(", ")
                )));
            }
        }
    }
    Ok(out)
}

/// Deserialise a header: a JSON object (serde would take an array for a
/// struct too), each member once, none unknown.
fn parse_object<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's message names the member and the problem ("duplicate
        // field `v`", "unknown field `x`", "invalid type: ..."), without the
        // value; the position is of no use to the reader of a job's error.
        let text = e.to_string();
        let text = text.find(" at line ").map_or(&text[..], |at| &text[..at]);
        match text.char_indices().nth(120) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.to_string(),
        }
    })
}
