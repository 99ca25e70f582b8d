//! One attempt to hold the stream: open `GET /v1/stream`, then read it until it
//! ends, handing each job to [`Jobs`]. A stream without a single byte (no event,
//! no keepalive) for three heartbeats counts as dead.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Client, Response, StatusCode, header};

use super::args::Config;
use super::describe;
use super::jobs::Jobs;
use super::sse::{Event, Item, Parser};
use super::status::Reporter;
use crate::backoff::Backoff;
use crate::job::JobEvent;

/// How an attempt ended; the caller decides how long to wait before the next.
#[derive(Debug)]
pub enum Ended {
    /// The stream was open and then ended. `spoke`: it sent at least one byte
    /// (then the backoff was reset and the next delay honours its `retry:`).
    /// `kind`: closed, silent, read_error or invalid (for the metrics).
    Dropped {
        reason: String,
        spoke: bool,
        kind: &'static str,
    },
    /// `409 listener_busy`: another listener holds it; wait `Retry-After`.
    Busy(Option<Duration>),
    /// The broker refused the token (401 or 403): a configuration error. With
    /// the broker's own explanation (`error.message` of its answer).
    Refused(StatusCode, Option<String>),
    /// No broker is there: the connection was refused (`unreachable`), or a
    /// proxy in front says so (502, 503, 504: `unexpected`). Restarting, most
    /// likely; the kind first (for the metrics).
    NoBroker(&'static str, String),
    /// No stream: a timeout, another network error (`unreachable`), or an
    /// unexpected answer; the kind first (for the metrics).
    Failed(&'static str, String),
}

/// The most of a refusal's body read for its explanation, and for how long.
const MAX_EXPLANATION_BODY: usize = 16 * 1024;
const EXPLANATION_WAIT: Duration = Duration::from_secs(5);
/// The longest explanation logged, in characters.
const MAX_EXPLANATION: usize = 300;

/// Open the stream and read it to its end.
pub async fn hold(
    config: &Config,
    client: &Client,
    jobs: &Arc<Jobs>,
    reporter: &Reporter,
    backoff: &mut Backoff,
) -> Ended {
    let response = match open(config, client).await {
        Ok(response) => response,
        Err(ended) => return ended,
    };
    reporter.connected();
    tracing::info!(server = %super::redacted(&config.server), listener_id = %config.listener_id, "stream connected");
    let ended = read(config, response, jobs, backoff).await;
    if let Ended::Dropped { kind, .. } = &ended {
        reporter.disconnected(kind);
    }
    ended
}

async fn open(config: &Config, client: &Client) -> Result<Response, Ended> {
    let request = client
        .get(config.stream_endpoint())
        .bearer_auth(config.token.expose())
        .header("X-Listener-Id", &config.listener_id)
        .header(header::ACCEPT, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache");
    let silence = config.silence();
    let response = match tokio::time::timeout(silence, request.send()).await {
        Err(_) => {
            return Err(Ended::Failed(
                "timeout",
                format!(
                    "no answer within {} s (three heartbeats)",
                    silence.as_secs_f64()
                ),
            ));
        }
        Ok(Err(error)) if connection_refused(&error) => {
            return Err(Ended::NoBroker("unreachable", describe(&error)));
        }
        Ok(Err(error)) => return Err(Ended::Failed("unreachable", describe(&error))),
        Ok(Ok(response)) => response,
    };
    match response.status() {
        StatusCode::OK if is_event_stream(&response) => Ok(response),
        StatusCode::OK => Err(Ended::Failed(
            "unexpected",
            "the answer is not an event stream (a proxy in the way?)".into(),
        )),
        StatusCode::CONFLICT => Err(Ended::Busy(retry_after(&response))),
        status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
            Err(Ended::Refused(status, explanation(response).await))
        }
        status => {
            let said = explanation(response).await;
            // A proxy's word that the broker behind it is not there: the
            // broker never answers 502 or 504 itself, and its own 503 (not
            // ready, shutting down) explains itself in its JSON.
            let absent = matches!(
                status,
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            ) || (status == StatusCode::SERVICE_UNAVAILABLE && said.is_none());
            let reason = match said {
                Some(said) => format!("the broker answered {status}: {said}"),
                None => format!("the broker answered {status}"),
            };
            if absent {
                Err(Ended::NoBroker("unexpected", reason))
            } else {
                Err(Ended::Failed("unexpected", reason))
            }
        }
    }
}

/// No one listens at the broker's address: the connection was refused.
fn connection_refused(error: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The broker's own explanation of a refusal: `error.message` of its JSON
/// body, on one line and cut short. A body that is not the broker's JSON (a
/// proxy's page) explains nothing. The request (and its token) is never part
/// of it.
async fn explanation(mut response: Response) -> Option<String> {
    let mut body = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(EXPLANATION_WAIT, response.chunk()).await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_EXPLANATION_BODY {
            return None;
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let message = value.pointer("/error/message")?.as_str()?;
    Some(one_line(message))
}

fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_EXPLANATION)
        .collect();
    line.trim().to_owned()
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// `Retry-After` in seconds (the broker never sends the date form).
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Read until the stream ends, goes silent, or breaks.
async fn read(
    config: &Config,
    response: Response,
    jobs: &Arc<Jobs>,
    backoff: &mut Backoff,
) -> Ended {
    let silence = config.silence();
    let mut body = response.bytes_stream();
    let mut parser = Parser::new();
    let mut spoke = false;
    loop {
        while let Some(item) = parser.next_item() {
            match item {
                Item::Retry(delay) => backoff.set_base(delay),
                Item::Comment(_) => {}
                Item::Event(event) => admit(event, jobs).await,
            }
        }
        // The clock runs only while waiting for bytes: time spent waiting for
        // a free job slot above is not silence of the stream.
        let (kind, reason) = match tokio::time::timeout(silence, body.next()).await {
            Ok(Some(Ok(bytes))) => {
                if !spoke {
                    spoke = true;
                    backoff.reset();
                }
                match parser.push(&bytes) {
                    Ok(()) => continue,
                    Err(error) => ("invalid", error.to_string()),
                }
            }
            Ok(Some(Err(error))) => ("read_error", format!("read failed: {}", describe(&error))),
            Ok(None) => ("closed", "the broker closed the stream".into()),
            Err(_) => (
                "silent",
                format!(
                    "no byte for {} s (three heartbeats): the stream is dead",
                    silence.as_secs_f64()
                ),
            ),
        };
        return Ended::Dropped {
            reason,
            spoke,
            kind,
        };
    }
}

async fn admit(event: Event, jobs: &Arc<Jobs>) {
    if event.event != "job" {
        tracing::debug!(event = %event.event, "ignoring an event that is not a job");
        return;
    }
    match serde_json::from_str::<JobEvent>(&event.data) {
        Ok(job) => {
            let id = job.id;
            if jobs.admit(job).await == super::jobs::Admitted::Repeat {
                tracing::debug!(
                    job_id = id,
                    "already handling this job; not forwarded again"
                );
            }
        }
        // Neither the data nor the parser's message (which may quote it) is logged.
        Err(error) => tracing::warn!(
            id = event.id.as_deref().unwrap_or(""),
            line = error.line(),
            column = error.column(),
            "a job event that cannot be read; ignored"
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_explanation_is_one_short_line() {
        assert_eq!(super::one_line("a\nb\u{1b}[31mc "), "a b [31mc");
        assert_eq!(super::one_line(&"x".repeat(1000)).len(), 300);
    }
}
