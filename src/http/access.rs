//! One log line and one count per request: method, route template, status,
//! duration and bytes sent. The route is the template of `ROUTES`
//! (`/v1/jobs/{id}`), never the raw path, and a path that fits no route is
//! logged as [`UNMATCHED`]; query strings, bodies and headers (tokens) are
//! never looked at. The line is written when the response body ends, so a
//! long poll or a stream is logged with its whole duration and size.
//!
//! Log target `backchannel::access`, level info; off with
//! `BACKCHANNEL_ACCESS_LOG=off` (the metrics are counted either way).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use warp::http::{Method, Request, Response, StatusCode};

use super::documented;
use super::error::ErrorCode;
use crate::telemetry::metrics::{Metrics, ReasonLabel, RequestLabels};

/// The route of a request whose path fits no documented route.
pub const UNMATCHED: &str = "(unmatched)";

/// Status recorded for a request whose client left before it was answered
/// (nginx's convention; no response was sent).
pub const CLIENT_GONE: u16 = 499;

/// The access log and request counts of one instance.
#[derive(Clone)]
pub struct AccessLog {
    enabled: bool,
    metrics: Arc<Metrics>,
}

impl AccessLog {
    pub fn new(enabled: bool, metrics: Arc<Metrics>) -> AccessLog {
        AccessLog { enabled, metrics }
    }

    /// A request arrived: note what it is and when.
    pub fn start<B>(&self, request: &Request<B>) -> Entry {
        Entry {
            line: Some(Line {
                enabled: self.enabled,
                method: method_name(request.method()),
                route: documented::route(request.uri().path()).unwrap_or(UNMATCHED),
                status: CLIENT_GONE,
                started: Instant::now(),
                bytes: 0,
            }),
            metrics: self.metrics.clone(),
        }
    }
}

/// A request being handled. Dropped before [`finish`](Entry::finish) gave a
/// response (the client left), it is logged and counted as [`CLIENT_GONE`].
pub struct Entry {
    line: Option<Line>,
    metrics: Arc<Metrics>,
}

impl Entry {
    /// Count the answer when it is ready; log it when its body has been sent.
    pub async fn finish<F, B>(mut self, response: F) -> Result<Response<Counted<B>>, Infallible>
    where
        F: Future<Output = Result<Response<B>, Infallible>>,
    {
        let Ok(response) = response.await;
        let mut line = self.line.take().expect("finished once");
        line.status = response.status().as_u16();
        self.count(&line, response.status(), response.extensions().get());
        Ok(response.map(|inner| Counted {
            inner,
            line: Some(line),
        }))
    }

    fn count(&self, line: &Line, status: StatusCode, code: Option<&ErrorCode>) {
        self.metrics
            .http
            .requests
            .get_or_create(&RequestLabels {
                method: line.method,
                route: line.route,
                status: line.status,
            })
            .inc();
        if status.is_client_error() {
            let reason = code.map_or("other", |c| c.0);
            self.metrics
                .http
                .refused
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            self.count(&line, StatusCode::OK, None);
        }
    }
}

/// What the log line says; written when dropped.
struct Line {
    enabled: bool,
    method: &'static str,
    route: &'static str,
    status: u16,
    started: Instant,
    bytes: u64,
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.enabled {
            let duration_ms = (self.started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
            tracing::info!(
                target: "backchannel::access",
                method = self.method,
                route = self.route,
                status = self.status,
                duration_ms,
                bytes = self.bytes,
                "request"
            );
        }
    }
}

/// A response body that counts the bytes it hands to the connection, and
/// writes the request's log line when it is dropped (sent, or cut off).
pub struct Counted<B> {
    inner: B,
    line: Option<Line>,
}

impl<B> Body for Counted<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Some(line)) = (frame.data_ref(), self.line.as_mut()) {
                line.bytes += bytes::Buf::remaining(data) as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The method as a fixed string: the standard ones by name, anything else
/// (extension methods are free text) as `OTHER`.
fn method_name(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::DELETE, "DELETE"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "TRACE"),
        (Method::CONNECT, "CONNECT"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("OTHER", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_fixed_set() {
        assert_eq!(method_name(&Method::DELETE), "DELETE");
        let odd = Method::from_bytes(b"SECRETSTUFF").unwrap();
        assert_eq!(method_name(&odd), "OTHER");
    }

    #[tokio::test]
    async fn routes_are_templates_and_unknown_paths_a_placeholder() {
        let log = AccessLog::new(false, Arc::new(Metrics::new()));
        let request = |path: &str| Request::get(path).body(()).unwrap();
        let route = |path: &str| log.start(&request(path)).line.as_ref().unwrap().route;
        assert_eq!(route("/v1/jobs/42?wait=30"), "/v1/jobs/{id}");
        assert_eq!(route("/v1/jobs/42/result"), "/v1/jobs/{id}/result");
        assert_eq!(route("/wp-admin/secret-token-in-path"), UNMATCHED);
    }

    #[tokio::test]
    async fn answers_are_counted_by_route_status_and_reason() {
        let metrics = Arc::new(Metrics::new());
        let log = AccessLog::new(false, metrics.clone());
        let entry = log.start(&Request::get("/v1/jobs/7").body(()).unwrap());
        let mut response = Response::new(String::from("{}"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.extensions_mut().insert(ErrorCode("unauthorized"));
        drop(entry.finish(async { Ok(response) }).await.unwrap());
        drop(log.start(&Request::get("/nope").body(()).unwrap()));
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"backchannel_http_requests_total{method="GET",route="/v1/jobs/{id}",status="401"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"backchannel_http_refused_total{reason="unauthorized"} 1"#));
        assert!(
            text.contains(r#"route="(unmatched)",status="499"} 1"#),
            "{text}"
        );
    }
}
