//! Turning a job into an answer: POST its payload to the internal endpoint
//! (or echo it back).
//!
//! The handler is asked at its configured URL only. A redirect is never
//! followed (the shared secret would go to the redirect's target): it fails
//! the job with `handler_redirect`. A handler that refuses or resets the
//! connection (restarting: an autoreload, a deploy) is asked again with
//! backoff until shortly before the job's deadline, so that the failure can
//! still be posted. The failures the agent names itself carry a stable `code`
//! (see [`Failure`]); a handler's own error answer is passed on as
//! `{"status", "body"}`.

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, StatusCode, Url};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::args::Secret;
use super::status::Reporter;
use crate::backoff::Backoff;
use crate::job::{Answer, JobEvent, format_time};
use crate::seal::Opened;

/// A handler body that is not JSON is passed on as text, cut to this many bytes
/// (an HTML error page can be large, and is no business of the submitter).
pub const MAX_TEXT_BODY: usize = 4096;

/// The header on every answer of the castellum kit (its value is the version
/// of the kit's contract).
pub const KIT_HEADER: &str = "x-backchannel-kit";

/// The first pause before asking an unreachable handler again, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(2);
/// At most this much of a job's time is kept back to post its failure.
const LONGEST_RESERVE: Duration = Duration::from_secs(1);

/// The client for the handler and what the agent knows of it.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Built without redirects (see `Agent::new`).
    pub(super) client: Client,
    pub(super) reporter: Reporter,
    /// The handler is the castellum kit: an answer without its header fails.
    pub(super) expect_kit: bool,
}

impl Handler {
    pub fn new(client: Client, reporter: Reporter, expect_kit: bool) -> Handler {
        Handler {
            client,
            reporter,
            expect_kit,
        }
    }
}

/// What the handler did, for the job's log line (never its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Echo,
    Status(u16),
    /// A 3xx: not followed.
    Redirect(u16),
    /// An answer without the kit's header, while the kit is expected.
    NotTheKit(u16),
    Timeout,
    Unreachable,
    Failed,
}

impl std::fmt::Display for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Echo => f.write_str("echo"),
            Handled::Status(status) => write!(f, "{status}"),
            Handled::Redirect(status) => write!(f, "{status} redirect"),
            Handled::NotTheKit(status) => write!(f, "{status} not the kit"),
            Handled::Timeout => f.write_str("timeout"),
            Handled::Unreachable => f.write_str("unreachable"),
            Handled::Failed => f.write_str("request failed"),
        }
    }
}

/// The failures the agent names itself: `error.code` of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No one took the connection (or it was cut) until the job's time ran out.
    Unreachable,
    /// The handler took the request but did not answer in the job's time.
    Timeout,
    /// The handler answered with a redirect, which the agent never follows.
    Redirect,
    /// The kit is expected and the answer is not the kit's (a wrong path).
    NotTheKit,
    /// Anything else that kept the request from being made.
    RequestFailed,
}

impl Failure {
    pub fn code(self) -> &'static str {
        match self {
            Failure::Unreachable => "handler_unreachable",
            Failure::Timeout => "handler_timeout",
            Failure::Redirect => "handler_redirect",
            Failure::NotTheKit => "not_the_kit",
            Failure::RequestFailed => "handler_request_failed",
        }
    }

    /// The job's error: the code, a message, and `extra` fields.
    fn answer(self, message: String, extra: Map<String, Value>) -> Answer {
        let mut error = Map::new();
        error.insert("code".into(), self.code().into());
        error.insert("message".into(), message.into());
        error.extend(extra);
        Answer::Error(Value::Object(error))
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

/// What came back from the handler.
struct Reply {
    status: StatusCode,
    /// It carries the kit's header.
    kit: bool,
    location: Option<String>,
    body: bytes::Bytes,
}

/// POST the payload to `url` with the job's headers; `left` is the job's time.
/// A 2xx JSON body is the result; anything else is an error answer. A handler
/// that cannot be reached is asked again until shortly before the deadline.
///
/// A sealed job (`opened`) is forwarded opened, with what its header
/// authenticates: `X-Backchannel-Ref` (the scheduler's `ref`, an idempotency
/// key: a redelivered job carries the same one) and `X-Backchannel-Signer`
/// (the signer's key id); `X-Backchannel-Kind` is then the authenticated kind
/// too. A plain job carries neither of the two.
pub async fn forward(
    handler: &Handler,
    url: &Url,
    secret: Option<&(HeaderName, Secret)>,
    job: &JobEvent,
    opened: Option<&Opened>,
    left: Duration,
) -> (Answer, Handled) {
    let give_up = Instant::now() + left.saturating_sub(reserve(left));
    let mut backoff = Backoff::new(FIRST_RETRY, LONGEST_RETRY);
    let mut tries = 1u32;
    let reply = loop {
        let budget = give_up.saturating_duration_since(Instant::now());
        match send(handler, url, secret, job, opened, budget).await {
            Ok(reply) => {
                handler.reporter.handler_answered();
                break Ok(reply);
            }
            Err(error) if no_one_there(&error) => {
                handler.reporter.handler_unreachable();
                let pause = backoff.next_delay();
                if Instant::now() + pause >= give_up {
                    break Err(Failure::Unreachable);
                }
                tracing::debug!(
                    job_id = job.id,
                    retry_in_ms = pause.as_millis() as u64,
                    "the handler is unreachable; trying again"
                );
                tokio::time::sleep(pause).await;
                handler.reporter.handler_retry();
                tries += 1;
            }
            Err(error) if error.is_timeout() => break Err(Failure::Timeout),
            Err(_) => break Err(Failure::RequestFailed),
        }
    };
    let (answer, handled) = match reply {
        Ok(reply) => judge(handler, url, reply),
        Err(failure) => from_failure(failure, tries),
    };
    if tries > 1 && matches!(handled, Handled::Status(_)) {
        tracing::info!(
            job_id = job.id,
            kind = %job.kind,
            tries,
            "the handler answered after being unreachable"
        );
    }
    if let Answer::Error(error) = &answer {
        warn_failed(handler, url, job, &handled, error, tries);
    }
    (answer, handled)
}

/// The time kept back from the handler to post its failure: a fifth of the
/// job's time, at most a second.
fn reserve(left: Duration) -> Duration {
    (left / 5).min(LONGEST_RESERVE)
}

async fn send(
    handler: &Handler,
    url: &Url,
    secret: Option<&(HeaderName, Secret)>,
    job: &JobEvent,
    opened: Option<&Opened>,
    timeout: Duration,
) -> Result<Reply, reqwest::Error> {
    let mut request = handler
        .client
        .post(url.clone())
        .timeout(timeout)
        .header("X-Backchannel-Job-Id", job.id.to_string())
        .header("X-Backchannel-Kind", &job.kind)
        .header("X-Backchannel-Attempt", job.attempt.to_string())
        .header("X-Backchannel-Deadline", format_time(&job.deadline))
        .header(header::ACCEPT, "application/json")
        .json(payload(job, opened));
    if let Some(opened) = opened {
        request = request
            .header("X-Backchannel-Ref", &opened.header.reference)
            .header("X-Backchannel-Signer", &opened.header.skid);
    }
    if let Some((name, value)) = secret {
        request = request.header(name.clone(), secret_value(value));
    }
    let response = request.send().await?;
    let status = response.status();
    let (kit, location) = marks(response.headers());
    let body = response.bytes().await?;
    Ok(Reply {
        status,
        kit,
        location,
        body,
    })
}

pub(super) fn secret_value(secret: &Secret) -> HeaderValue {
    let mut value = HeaderValue::from_str(secret.expose()).expect("checked at start-up");
    value.set_sensitive(true);
    value
}

/// Whether the answer carries the kit's header, and its `Location`.
pub(super) fn marks(headers: &HeaderMap) -> (bool, Option<String>) {
    let kit = headers
        .get(KIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (kit, location)
}

/// The answer to a reply: a redirect, an answer that is not the kit's (when
/// the kit is expected), or the handler's own result or error.
fn judge(handler: &Handler, url: &Url, reply: Reply) -> (Answer, Handled) {
    let status = reply.status.as_u16();
    if reply.status.is_redirection() {
        let mut extra = Map::new();
        extra.insert("status".into(), status.into());
        let origin = reply.location.as_deref().and_then(|l| origin_of(url, l));
        let message = match &origin {
            Some(origin) => format!(
                "the handler answered {status}, a redirect to {origin}; the agent never follows redirects"
            ),
            None => format!(
                "the handler answered {status}, a redirect; the agent never follows redirects"
            ),
        };
        if let Some(origin) = origin {
            extra.insert("location".into(), origin.into());
        }
        return (
            Failure::Redirect.answer(message, extra),
            Handled::Redirect(status),
        );
    }
    if handler.expect_kit && !reply.kit {
        let mut extra = Map::new();
        extra.insert("status".into(), status.into());
        let message = format!(
            "the agent's forward URL does not reach the castellum kit: it answered {status} without the X-Backchannel-Kit header (a wrong path?)"
        );
        return (
            Failure::NotTheKit.answer(message, extra),
            Handled::NotTheKit(status),
        );
    }
    (
        from_response(reply.status, &reply.body),
        Handled::Status(status),
    )
}

/// The origin (`scheme://host:port`) a `Location` points to, relative to the
/// forward URL: never its path or query, which may carry anything.
pub(super) fn origin_of(url: &Url, location: &str) -> Option<String> {
    let target = url.join(location).ok()?;
    let origin = target.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
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

/// No one took the connection, or it was cut before the answer came: the
/// handler is not there (yet), or restarting. Worth asking again; a handler
/// that was cut off mid-request may see the same job twice, which delivery
/// at least once allows.
pub(super) fn no_one_there(error: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    if error.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The handler could not be asked: say why, without its address.
fn from_failure(failure: Failure, tries: u32) -> (Answer, Handled) {
    let (message, handled) = match failure {
        Failure::Unreachable => (
            format!(
                "the handler is unreachable (tried {tries} time{} until shortly before the job's deadline)",
                if tries == 1 { "" } else { "s" }
            ),
            Handled::Unreachable,
        ),
        Failure::Timeout => (
            "the handler did not answer before the job's deadline".to_owned(),
            Handled::Timeout,
        ),
        Failure::RequestFailed | Failure::Redirect | Failure::NotTheKit => (
            "the request to the handler failed".to_owned(),
            Handled::Failed,
        ),
    };
    (failure.answer(message, Map::new()), handled)
}

/// One WARN line per job the handler failed: the job, the status or the
/// reason, the code; never the body (nor the handler's message, which may
/// quote data). The kit's code is a label its program chose, so it is shown
/// when it looks like one.
fn warn_failed(
    handler: &Handler,
    url: &Url,
    job: &JobEvent,
    handled: &Handled,
    error: &Value,
    tries: u32,
) {
    let own = error.get("code").and_then(Value::as_str);
    let reason = match handled {
        Handled::Status(_) => "status",
        Handled::Redirect(_) => "redirect",
        Handled::NotTheKit(_) => "not_the_kit",
        Handled::Timeout => "timeout",
        Handled::Unreachable => "unreachable",
        Handled::Failed | Handled::Echo => "failed",
    };
    handler.reporter.handler_failed(reason);
    let kit_code = error
        .pointer("/body/error/code")
        .and_then(Value::as_str)
        .filter(|code| is_label(code));
    let code = own.or(kit_code).unwrap_or("");
    let (job_id, kind, attempt) = (job.id, &job.kind, job.attempt);
    let location = error.get("location").and_then(Value::as_str).unwrap_or("");
    match handled {
        Handled::NotTheKit(status) => tracing::warn!(
            job_id, %kind, attempt, status, code, path = url.path(),
            "the forward URL's answer is not the castellum kit's (no X-Backchannel-Kit header): check the path of BACKCHANNEL_FORWARD"
        ),
        Handled::Redirect(status) => tracing::warn!(
            job_id, %kind, attempt, status, code, location,
            "the handler answered with a redirect, which the agent never follows"
        ),
        Handled::Unreachable => tracing::warn!(
            job_id, %kind, attempt, code, tries,
            "the handler is unreachable; the job fails"
        ),
        _ => tracing::warn!(
            job_id, %kind, attempt, handler = %handled, code,
            "the handler failed the job"
        ),
    }
}

/// 1 to 100 of `A-Z a-z 0-9 . _ : -`: the kit's codes.
fn is_label(text: &str) -> bool {
    (1..=100).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
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

    #[test]
    fn a_redirect_names_only_its_target_s_origin() {
        let url = Url::parse("http://127.0.0.1:8000/backchannel/job").unwrap();
        assert_eq!(
            origin_of(&url, "https://sso.example.org/login?next=/x&token=abc").as_deref(),
            Some("https://sso.example.org")
        );
        assert_eq!(
            origin_of(&url, "/accounts/login/?next=/backchannel/job").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(origin_of(&url, "data:text/plain,hi"), None);
    }

    #[test]
    fn the_time_kept_back_is_a_fifth_at_most_a_second() {
        assert_eq!(reserve(Duration::from_secs(30)), Duration::from_secs(1));
        assert_eq!(reserve(Duration::from_secs(2)), Duration::from_millis(400));
    }

    #[test]
    fn failures_carry_their_code() {
        let (answer, handled) = from_failure(Failure::Unreachable, 3);
        assert_eq!(handled, Handled::Unreachable);
        let Answer::Error(error) = answer else {
            panic!("an error")
        };
        assert_eq!(error["code"], "handler_unreachable");
        assert!(error["message"].as_str().unwrap().contains("3 times"));
        assert!(is_label("no_such_invitation") && !is_label("a b") && !is_label(""));
    }
}
