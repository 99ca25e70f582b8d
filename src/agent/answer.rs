//! Posting an answer back: `POST /v1/jobs/{id}/result`, retried with backoff on
//! network errors and 5xx until the job's deadline.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::args::Config;
use super::status::Reporter;
use crate::backoff::Backoff;
use crate::job::Answer;
use crate::seal::Responder;

/// The first pause between two tries of the same answer, and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// The most one try may take, when the deadline is further away.
const TRY_TIMEOUT: Duration = Duration::from_secs(30);

/// How posting an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// 200: the broker took it (first time or replay).
    Accepted,
    /// 409: the job already carries a different answer.
    Conflict,
    /// 410: the job expired or was cancelled.
    Gone,
    /// 404: the broker knows no such job.
    Unknown,
    /// Another 4xx: retrying would not help.
    Refused(u16),
    /// The deadline passed while the broker could not be reached.
    DeadlinePassed,
}

impl Posted {
    pub fn as_str(self) -> &'static str {
        match self {
            Posted::Accepted => "accepted",
            Posted::Conflict => "conflict",
            Posted::Gone => "gone",
            Posted::Unknown => "unknown",
            Posted::Refused(_) => "refused",
            Posted::DeadlinePassed => "deadline_passed",
        }
    }
}

/// The request body for an answer.
pub fn body(answer: &Answer) -> Value {
    match answer {
        Answer::Result(value) => json!({ "result": value }),
        Answer::Error(value) => json!({ "error": value }),
    }
}

/// Post `answer` for job `id`. If the broker finds it too large, answer with
/// an error saying so instead, so that the submitter is not left waiting
/// (sealed with `responder` for a sealed job, like any of its answers).
pub async fn post(
    client: &Client,
    config: &Config,
    reporter: &Reporter,
    (id, deadline): (i64, DateTime<Utc>),
    answer: &Answer,
    responder: Option<&Responder>,
) -> Posted {
    match post_body(client, config, reporter, id, &body(answer), deadline).await {
        Posted::Refused(413) => {
            tracing::warn!(
                job_id = id,
                "the answer is larger than the broker accepts; answering with an error"
            );
            let error = Answer::Error(json!({
                "message": "the handler's answer is larger than the broker accepts"
            }));
            let error = match responder {
                Some(responder) => super::sealed::seal_answer(responder, error),
                None => error,
            };
            post_body(client, config, reporter, id, &body(&error), deadline).await
        }
        posted => posted,
    }
}

async fn post_body(
    client: &Client,
    config: &Config,
    reporter: &Reporter,
    id: i64,
    body: &Value,
    deadline: DateTime<Utc>,
) -> Posted {
    let url = config.endpoint(&format!("v1/jobs/{id}/result"));
    let mut backoff = Backoff::new(FIRST_RETRY, LONGEST_RETRY);
    loop {
        let Some(left) = until(deadline) else {
            return Posted::DeadlinePassed;
        };
        let sent = client
            .post(url.clone())
            .bearer_auth(config.token.expose())
            .timeout(left.min(TRY_TIMEOUT))
            .json(body)
            .send()
            .await;
        match sent {
            Ok(response) => match response.status() {
                StatusCode::OK => return Posted::Accepted,
                StatusCode::CONFLICT => return Posted::Conflict,
                StatusCode::GONE => return Posted::Gone,
                StatusCode::NOT_FOUND => return Posted::Unknown,
                status if retryable(status) => {
                    tracing::debug!(job_id = id, %status, "answer not taken; retrying");
                }
                status => return Posted::Refused(status.as_u16()),
            },
            Err(error) => {
                tracing::debug!(job_id = id, error = %super::describe(&error), "answer not sent; retrying");
            }
        }
        let pause = backoff.next_delay();
        match until(deadline) {
            Some(left) if left > pause => {
                tokio::time::sleep(pause).await;
                reporter.answer_retry();
            }
            _ => return Posted::DeadlinePassed,
        }
    }
}

/// 5xx, and the 4xx that mean "later" rather than "no".
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// Time left before `deadline`, if any.
pub fn until(deadline: DateTime<Utc>) -> Option<Duration> {
    (deadline - Utc::now())
        .to_std()
        .ok()
        .filter(|left| !left.is_zero())
}
