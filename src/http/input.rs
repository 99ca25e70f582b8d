//! Validating what clients send, field by field, with the field named.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use warp::http::StatusCode;

use super::error::ApiError;
use crate::config::Settings;
use crate::job::{Answer, NewJob};
use crate::json::{self, Refusal};

/// Longest `kind` and `idempotency_key`, in characters.
pub const MAX_NAME_LEN: usize = 200;

fn field(name: &str, problem: &str) -> ApiError {
    ApiError::bad_request("invalid_field", format!("{name}: {problem}"))
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        )),
    }
}

fn reject_unknown(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(ApiError::bad_request(
            "unknown_field",
            format!(
                "unknown field {:?}; allowed: {}",
                truncate(key),
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A JSON value the database can store and a listener can read, or a 400
/// (413 when, written out as stored, it is larger than the body limit)
/// naming the field.
fn storable(name: &str, value: Value, settings: &Settings) -> Result<Value, ApiError> {
    let limit = settings.max_body;
    match json::check_value(&value, limit) {
        Ok(_) => Ok(value),
        Err(Refusal::TooLarge) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{name}: {}", Refusal::TooLarge.describe(limit)),
        )),
        Err(refusal) => Err(field(name, &refusal.describe(limit))),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

pub fn valid_kind(kind: &str) -> bool {
    let len = kind.chars().count();
    (1..=MAX_NAME_LEN).contains(&len)
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The body of `POST /v1/jobs`.
pub fn submit(body: Value, settings: &Settings) -> Result<NewJob, ApiError> {
    let mut map = object(body)?;
    reject_unknown(&map, &["kind", "payload", "timeout", "idempotency_key"])?;
    let kind = match map.remove("kind") {
        Some(Value::String(kind)) if valid_kind(&kind) => kind,
        Some(Value::String(_)) => {
            return Err(field(
                "kind",
                "must be 1 to 200 characters of A-Z a-z 0-9 . _ : -",
            ));
        }
        Some(_) => return Err(field("kind", "must be a string")),
        None => return Err(field("kind", "is required")),
    };
    let payload = storable(
        "payload",
        map.remove("payload").unwrap_or(Value::Null),
        settings,
    )?;
    let max_timeout = settings.max_timeout.as_secs_f64();
    let timeout_secs = match map.remove("timeout") {
        None | Some(Value::Null) => settings.default_timeout.as_secs_f64(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() && t > 0.0 && t <= max_timeout => t,
            Some(t) if t > max_timeout => {
                return Err(field(
                    "timeout",
                    &format!("must be at most {max_timeout} seconds"),
                ));
            }
            _ => {
                return Err(field(
                    "timeout",
                    "must be a number of seconds greater than 0",
                ));
            }
        },
        Some(_) => return Err(field("timeout", "must be a number of seconds")),
    };
    let idempotency_key = match map.remove("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key))
            if (1..=MAX_NAME_LEN).contains(&key.chars().count()) && !key.contains('\0') =>
        {
            Some(key)
        }
        Some(Value::String(_)) => {
            return Err(field(
                "idempotency_key",
                "must be 1 to 200 characters, without U+0000",
            ));
        }
        Some(_) => return Err(field("idempotency_key", "must be a string")),
    };
    Ok(NewJob {
        kind,
        payload,
        timeout_secs,
        idempotency_key,
        channel: crate::job::DEFAULT_CHANNEL,
    })
}

/// The body of `POST /v1/jobs/{id}/result`: exactly one of result or error.
pub fn answer(body: Value, settings: &Settings) -> Result<Answer, ApiError> {
    let mut map = object(body)?;
    reject_unknown(&map, &["result", "error"])?;
    match (map.remove("result"), map.remove("error")) {
        (Some(result), None) => Ok(Answer::Result(storable("result", result, settings)?)),
        (None, Some(error)) => Ok(Answer::Error(storable("error", error, settings)?)),
        _ => Err(ApiError::bad_request(
            "invalid_body",
            "the body must have exactly one of the fields result and error",
        )),
    }
}

/// The `wait` query parameter: seconds, 0 when absent.
/// Takes the query by value: a waiting request should not keep it.
pub fn wait(query: HashMap<String, String>, settings: &Settings) -> Result<Duration, ApiError> {
    let Some(text) = query.get("wait") else {
        return Ok(Duration::ZERO);
    };
    let max_timeout = settings.max_timeout.as_secs_f64();
    match text.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 && w <= max_timeout => Ok(Duration::from_secs_f64(w)),
        Ok(w) if w > max_timeout => Err(ApiError::bad_request(
            "invalid_query",
            format!("wait: must be at most {max_timeout} seconds"),
        )),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "wait: must be a number of seconds, 0 or more",
        )),
    }
}

/// A job id from the path: a positive integer in decimal digits, nothing else.
pub fn job_id(text: &str) -> Result<i64, ApiError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(id) = text.parse::<i64>() {
            if id > 0 {
                return Ok(id);
            }
        }
    }
    Err(ApiError::bad_request(
        "invalid_id",
        "id: a job id is a positive integer",
    ))
}

/// The optional `X-Listener-Id` header.
pub fn listener_id(value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) if id.chars().count() <= MAX_NAME_LEN && id.chars().all(|c| !c.is_control()) => {
            Ok(Some(id.to_owned()))
        }
        Some(_) => Err(ApiError::bad_request(
            "invalid_header",
            "X-Listener-Id: must be at most 200 printable characters",
        )),
    }
}
