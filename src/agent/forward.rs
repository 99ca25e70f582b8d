//! Turning a job into an answer: POST its payload to the internal endpoint
//! (or echo it back).

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Client, StatusCode, Url};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::args::Secret;
use crate::job::{Answer, JobEvent, format_time};
use crate::seal::Opened;

/// A handler body that is not JSON is passed on as text, cut to this many bytes
/// (an HTML error page can be large, and is no business of the submitter).
pub const MAX_TEXT_BODY: usize = 4096;

/// What the handler did, for the job's log line (never its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Echo,
    Status(u16),
    Timeout,
    Unreachable,
    Failed,
}

impl std::fmt::Display for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Echo => f.write_str("echo"),
            Handled::Status(status) => write!(f, "{status}"),
            Handled::Timeout => f.write_str("timeout"),
            Handled::Unreachable => f.write_str("unreachable"),
            Handled::Failed => f.write_str("request failed"),
        }
    }
}

/// The payload the handler gets: the job's, or the opened one of a sealed job.
pub fn payload<'a>(job: &'a JobEvent, opened: Option<&'a Opened>) -> &'a RawValue {
    opened.map_or(&job.payload, |opened| &opened.payload)
}

/// The payload as its result.
pub fn echo(payload: &RawValue) -> (Answer, Handled) {
    match serde_json::from_str(payload.get()) {
        Ok(payload) => (Answer::Result(payload), Handled::Echo),
        Err(_) => (
            Answer::Error(json!({"message": "the payload cannot be echoed"})),
            Handled::Failed,
        ),
    }
}

/// POST the payload to `url` with the job's headers, giving up after `timeout`.
/// A 2xx JSON body is the result; anything else is an error answer.
///
/// A sealed job (`opened`) is forwarded opened, with what its header
/// authenticates: `X-Backchannel-Ref` (the scheduler's `ref`, an idempotency
/// key: a redelivered job carries the same one) and `X-Backchannel-Signer`
/// (the signer's key id); `X-Backchannel-Kind` is then the authenticated kind
/// too. A plain job carries neither of the two.
pub async fn forward(
    client: &Client,
    url: &Url,
    secret: Option<&(HeaderName, Secret)>,
    job: &JobEvent,
    opened: Option<&Opened>,
    timeout: Duration,
) -> (Answer, Handled) {
    let mut request = client
        .post(url.clone())
        .timeout(timeout)
        .header("X-Backchannel-Job-Id", job.id.to_string())
        .header("X-Backchannel-Kind", &job.kind)
        .header("X-Backchannel-Attempt", job.attempt.to_string())
        .header("X-Backchannel-Deadline", format_time(&job.deadline))
        .header(reqwest::header::ACCEPT, "application/json")
        .json(payload(job, opened));
    if let Some(opened) = opened {
        request = request
            .header("X-Backchannel-Ref", &opened.header.reference)
            .header("X-Backchannel-Signer", &opened.header.skid);
    }
    if let Some((name, value)) = secret {
        let mut value = HeaderValue::from_str(value.expose()).expect("checked at start-up");
        value.set_sensitive(true);
        request = request.header(name.clone(), value);
    }
    let outcome = async {
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    }
    .await;
    match outcome {
        Ok((status, body)) => (
            from_response(status, &body),
            Handled::Status(status.as_u16()),
        ),
        Err(error) => from_failure(&error),
    }
}

fn from_response(status: StatusCode, body: &[u8]) -> Answer {
    let parsed = parse_body(body);
    if status.is_success() {
        match parsed {
            Ok(value) => Answer::Result(value),
            Err(text) => Answer::Error(json!({
                "status": status.as_u16(),
                "message": "the handler's response is not JSON",
                "body": text,
            })),
        }
    } else {
        let body = parsed.unwrap_or_else(|text| text);
        Answer::Error(json!({"status": status.as_u16(), "body": body}))
    }
}

/// The body as JSON (an empty body is `null`), or else as text, cut short.
fn parse_body(body: &[u8]) -> Result<Value, Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|_| {
        let mut end = body.len().min(MAX_TEXT_BODY);
        while end > 0 && end < body.len() && !is_char_start(body[end]) {
            end -= 1;
        }
        Value::String(String::from_utf8_lossy(&body[..end]).into_owned())
    })
}

fn is_char_start(byte: u8) -> bool {
    byte & 0b1100_0000 != 0b1000_0000
}

/// The handler could not be asked: say why, without its address.
fn from_failure(error: &reqwest::Error) -> (Answer, Handled) {
    let (message, handled) = if error.is_timeout() {
        (
            "the handler did not answer before the job's deadline",
            Handled::Timeout,
        )
    } else if error.is_connect() {
        ("the handler is unreachable", Handled::Unreachable)
    } else {
        ("the request to the handler failed", Handled::Failed)
    };
    (Answer::Error(json!({"message": message})), handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_json_body_is_the_result() {
        let answer = from_response(StatusCode::OK, br#"{"name":"Ada"}"#);
        assert_eq!(answer, Answer::Result(json!({"name": "Ada"})));
        let answer = from_response(StatusCode::NO_CONTENT, b"");
        assert_eq!(answer, Answer::Result(Value::Null));
    }

    #[test]
    fn anything_else_is_an_error_with_the_status() {
        let answer = from_response(StatusCode::NOT_FOUND, br#"{"detail":"no"}"#);
        assert_eq!(
            answer,
            Answer::Error(json!({"status": 404, "body": {"detail": "no"}}))
        );
        let answer = from_response(StatusCode::OK, b"<html>");
        let Answer::Error(error) = answer else {
            panic!("not JSON is an error")
        };
        assert_eq!(error["status"], 200);
        assert_eq!(error["body"], "<html>");
    }

    #[test]
    fn a_long_text_body_is_cut_on_a_character_boundary() {
        let page = "é".repeat(MAX_TEXT_BODY);
        let answer = from_response(StatusCode::INTERNAL_SERVER_ERROR, page.as_bytes());
        let Answer::Error(error) = answer else {
            panic!("a 500 is an error")
        };
        let text = error["body"].as_str().unwrap();
        assert!(text.len() <= MAX_TEXT_BODY && text.len() >= MAX_TEXT_BODY - 1);
        assert!(text.chars().all(|c| c == 'é'));
    }
}
