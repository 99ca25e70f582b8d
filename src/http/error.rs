//! The one error body of the API, and the rejection handler that produces it.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::annotate::{ErrorCode, JobId};
use crate::broker::BrokerError;
use crate::job::Job;

/// `{"error": {"code", "message", "job"?}}` with its status and headers.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub job: Option<Box<Job>>,
    pub retry_after: Option<u64>,
    pub bearer_challenge: bool,
    /// The methods of a path, for the `Allow` header of a 405.
    pub allow: Option<String>,
}

impl warp::reject::Reject for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            job: None,
            retry_after: None,
            bearer_challenge: false,
            allow: None,
        }
    }

    /// A malformed field or value, named in the message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn with_job(mut self, job: Job) -> ApiError {
        self.job = Some(Box::new(job));
        self
    }

    /// Ask the client to try again after `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// A 503 worth retrying in a second.
    pub fn retry_soon(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(1)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::retry_soon("database_unavailable", message)
    }

    /// A 500 that says nothing of its cause (logged where it is known).
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a Job>,
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                job: self.job.as_deref(),
            },
        };
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(job) = &self.job {
            response.extensions_mut().insert(JobId(job.id));
        }
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(methods) = self
            .allow
            .as_deref()
            .and_then(|m| HeaderValue::from_str(m).ok())
        {
            headers.insert(header::ALLOW, methods);
        }
        if self.bearer_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"backchannel\""),
            );
        }
        response
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> ApiError {
        use StatusCode as S;
        match error {
            BrokerError::NotFound => {
                ApiError::new(S::NOT_FOUND, "not_found", "no job with this id")
            }
            BrokerError::AlreadyTerminal(job) => {
                let message = format!("the job is already {}", job.state.as_str());
                ApiError::new(S::CONFLICT, "already_terminal", message).with_job(*job)
            }
            BrokerError::AlreadyAnswered(job) => {
                let message = "the job was already answered with a different answer";
                ApiError::new(S::CONFLICT, "already_answered", message).with_job(*job)
            }
            BrokerError::Gone(job) => {
                let message = format!("the job is {} and takes no answer", job.state.as_str());
                ApiError::new(S::GONE, "gone", message).with_job(*job)
            }
            BrokerError::ListenerBusy => {
                let message = "another listener holds the stream";
                ApiError::new(S::CONFLICT, "listener_busy", message)
                    .retry_after(crate::broker::STREAM_RETRY.as_secs().max(1))
            }
            BrokerError::ShuttingDown => ApiError::retry_soon(
                "shutting_down",
                "this instance is shutting down; try another",
            ),
            BrokerError::TooManyWaiting => ApiError::retry_soon(
                "too_many_waiting",
                "too many requests are waiting on this instance; retry, or submit without wait and poll",
            ),
            BrokerError::ChannelFull(limit) => ApiError::new(
                S::TOO_MANY_REQUESTS,
                "channel_full",
                format!(
                    "the channel holds {limit} open jobs, its limit (max_open_jobs); nothing was stored, retry later"
                ),
            )
            .retry_after(1),
            BrokerError::Overloaded(message) => {
                tracing::warn!(error = %message, "request refused: too many queue for the database");
                ApiError::retry_soon(
                    "overloaded",
                    "too many requests queue for the database on this instance; nothing was stored, retry shortly",
                )
            }
            BrokerError::Sealing(refusal) => {
                let status = S::from_u16(refusal.code.status()).expect("a valid status");
                ApiError::new(status, refusal.code.as_str(), refusal.message)
            }
            BrokerError::InvalidValue(what) => {
                ApiError::bad_request("invalid_value", format!("{what}; nothing was stored"))
            }
            BrokerError::Unavailable {
                read_only: true,
                message,
            } => {
                tracing::warn!(error = %message, "database read-only");
                ApiError::retry_soon(
                    "database_read_only",
                    "the database is read-only now (a standby, or read-only by setting); try again shortly",
                )
            }
            BrokerError::Unavailable {
                read_only: false,
                message,
            } => {
                tracing::warn!(error = %message, "database unavailable");
                ApiError::unavailable("the database is unreachable; try again shortly")
            }
            BrokerError::Internal(_) => ApiError::internal(),
            BrokerError::Database(message) => {
                // Shown by SQLSTATE and the objects named, never the data.
                tracing::error!(error = %message, "database error");
                ApiError::internal()
            }
        }
    }
}

impl From<BrokerError> for Rejection {
    fn from(error: BrokerError) -> Rejection {
        warp::reject::custom(ApiError::from(error))
    }
}

/// Turn every rejection into the JSON error body.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    let error = if let Some(e) = rejection.find::<ApiError>() {
        e.clone()
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        )
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    } else if rejection.find::<reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid_query", "the query string is malformed")
    } else if let Some(e) = rejection.find::<reject::InvalidHeader>() {
        ApiError::bad_request(
            "invalid_header",
            format!("header {} is malformed", e.name()),
        )
    } else if let Some(e) = rejection.find::<reject::MissingHeader>() {
        ApiError::bad_request("missing_header", format!("header {} is required", e.name()))
    } else if rejection.find::<reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        )
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::internal()
    };
    Ok(error.into_response())
}
