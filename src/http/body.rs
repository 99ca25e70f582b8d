//! Reading a JSON request body: content type, size limit, then parse.
//! Chunked bodies without a Content-Length are counted as they arrive.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use warp::Filter;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;

use super::error::ApiError;

/// A filter extracting the body as JSON, refusing bodies over `max` bytes (413),
/// content types other than JSON (415) and bodies slower than `timeout` (408).
pub fn json(
    max: u64,
    timeout: Duration,
) -> impl Filter<Extract = (Value,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        // On the heap: the router's future is sized for its largest state.
        .and_then(move |headers: HeaderMap, body| {
            Box::pin(async move {
                match tokio::time::timeout(timeout, read(&headers, body, max)).await {
                    Ok(result) => result.map_err(warp::reject::custom),
                    Err(_) => Err(warp::reject::custom(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request body was not received in time",
                    ))),
                }
            })
        })
}

/// Like [`json`], the body's bytes as sent (for a forwarded request, whose
/// signature covers exactly those bytes).
pub fn bytes(
    max: u64,
    timeout: Duration,
) -> impl Filter<Extract = (bytes::Bytes,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::body::stream())
        .and_then(move |headers: HeaderMap, body| {
            Box::pin(async move {
                match tokio::time::timeout(timeout, read_bytes(&headers, body, max)).await {
                    Ok(result) => result.map(BytesMut::freeze).map_err(warp::reject::custom),
                    Err(_) => Err(warp::reject::custom(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request body was not received in time",
                    ))),
                }
            })
        })
}

/// Whether the request sends a body (a Content-Length above 0, or chunks).
pub fn sent() -> impl Filter<Extract = (bool,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: HeaderMap| {
        headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0")
    })
}

/// A request refused before its body was read (no token, wrong route, type
/// or size) leaves the body unread, and the server then drops the connection
/// after answering. Say so with `Connection: close`, so that no client sends
/// its next request on a connection that is about to close.
pub fn close_after_refusal(sent_body: bool, mut response: Response) -> Response {
    let status = response.status();
    if sent_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {max} bytes"),
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read<S, B>(headers: &HeaderMap, body: S, max: u64) -> Result<Value, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let buffer = read_bytes(headers, body, max).await?;
    serde_json::from_slice(&buffer).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", json_problem(&e)),
        )
    })
}

/// The body of a JSON request, at most `max` bytes.
async fn read_bytes<S, B>(headers: &HeaderMap, body: S, max: u64) -> Result<BytesMut, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be sent with Content-Type: application/json",
        ));
    }
    let mut buffer = BytesMut::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| {
            ApiError::bad_request("body_read_error", "the request body could not be read")
        })?;
        if buffer.len() as u64 + chunk.remaining() as u64 > max {
            return Err(too_large(max));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buffer.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buffer)
}

/// Where the JSON broke, without echoing any of its content.
fn json_problem(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Eof => "it ends too early",
        Category::Syntax => "syntax error",
        Category::Data | Category::Io => "unreadable",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}
