//! The one error body of the API, and the rejection handler that produces it.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

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

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            message,
        );
        e.retry_after = Some(1);
        e
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
        response
            .extensions_mut()
            .insert(super::access::ErrorCode(self.code));
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
        match error {
            BrokerError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no job with this id")
            }
            BrokerError::AlreadyTerminal(job) => ApiError::new(
                StatusCode::CONFLICT,
                "already_terminal",
                format!("the job is already {}", job.state.as_str()),
            )
            .with_job(*job),
            BrokerError::AlreadyAnswered(job) => ApiError::new(
                StatusCode::CONFLICT,
                "already_answered",
                "the job was already answered with a different answer",
            )
            .with_job(*job),
            BrokerError::Gone(job) => ApiError::new(
                StatusCode::GONE,
                "gone",
                format!("the job is {} and takes no answer", job.state.as_str()),
            )
            .with_job(*job),
            BrokerError::ListenerBusy => {
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "listener_busy",
                    "another listener holds the stream",
                );
                e.retry_after = Some(crate::broker::STREAM_RETRY.as_secs().max(1));
                e
            }
            BrokerError::ShuttingDown => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "this instance is shutting down; try another",
                );
                e.retry_after = Some(1);
                e
            }
            BrokerError::TooManyWaiting => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_waiting",
                    "too many requests are waiting on this instance; retry, or submit without wait and poll",
                );
                e.retry_after = Some(1);
                e
            }
            BrokerError::InvalidValue(what) => {
                ApiError::bad_request("invalid_value", format!("{what}; nothing was stored"))
            }
            BrokerError::Unavailable {
                read_only: true,
                message,
            } => {
                tracing::warn!(error = %message, "database read-only");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_read_only",
                    "the database is read-only now (a standby, or read-only by setting); try again shortly",
                );
                e.retry_after = Some(1);
                e
            }
            BrokerError::Unavailable {
                read_only: false,
                message,
            } => {
                tracing::warn!(error = %message, "database unavailable");
                ApiError::unavailable("the database is unreachable; try again shortly")
            }
            BrokerError::Internal(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ),
            BrokerError::Database(error) => {
                // Shown by SQLSTATE and the objects named, never the data.
                tracing::error!(%error, "database error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
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
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    };
    Ok(error.into_response())
}
