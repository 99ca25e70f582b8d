//! One log line and one count per request: method, route template, status,
//! duration and bytes sent; who asked (`client`, `token_id`, `role`) and,
//! on job routes, which job (`job_id`). The route is the template of
//! `ROUTES` (`/v1/jobs/{id}`), never the raw path, and a path that fits no
//! route is logged as [`UNMATCHED`]; query strings and bodies are never
//! looked at, and of the headers only the bearer token (reduced to its
//! [`TokenId`], for a configured token only) and, from a trusted proxy,
//! `X-Forwarded-For`. The job id is the one of the job the answer carries
//! (a job that exists), never read from the path. The line is written when
//! the response body ends, so a long poll or a stream is logged with its
//! whole duration and size.
//!
//! Log target `backchannel::access`, level info; off with
//! `BACKCHANNEL_ACCESS_LOG=off` (the metrics are counted either way).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use warp::http::{HeaderMap, Method, Request, Response, StatusCode};

use super::auth::{LiveTokens, Role, TokenId};
use super::documented;

use super::annotate::{ErrorCode, JobId};
use crate::config::Cidr;
use crate::telemetry::metrics::{Metrics, ReasonLabel, RequestLabels, TokenLabels};

/// `X-Forwarded-For` entries looked at, at most, from the nearest one back.
const FORWARDED_HOPS: usize = 16;

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
    tokens: Option<LiveTokens>,
    trusted: Arc<[Cidr]>,
}

impl AccessLog {
    pub fn new(enabled: bool, metrics: Arc<Metrics>) -> AccessLog {
        AccessLog {
            enabled,
            metrics,
            tokens: None,
            trusted: Arc::from([]),
        }
    }

    /// Name the requests' tokens by their [`TokenId`] (configured tokens only).
    pub fn identifying(mut self, tokens: LiveTokens) -> AccessLog {
        self.tokens = Some(tokens);
        self
    }

    /// Take the client from `X-Forwarded-For` when the peer is one of `trusted`.
    pub fn trusting(mut self, trusted: &[Cidr]) -> AccessLog {
        self.trusted = Arc::from(trusted);
        self
    }

    /// A request arrived from `peer`: note what it is, who sent it, and when.
    pub fn start<B>(&self, request: &Request<B>, peer: SocketAddr) -> Entry {
        let token = self
            .tokens
            .as_ref()
            .and_then(|tokens| tokens.current().identify(request.headers()));
        Entry {
            line: Some(Line {
                enabled: self.enabled,
                method: method_name(request.method()),
                route: documented::route(request.uri().path()).unwrap_or(UNMATCHED),
                status: CLIENT_GONE,
                started: Instant::now(),
                bytes: 0,
                client: client(peer.ip(), request.headers(), &self.trusted),
                token,
                job_id: None,
            }),
            metrics: self.metrics.clone(),
        }
    }
}

/// Who sent a request: the peer; or, when the peer is a trusted proxy, the
/// nearest address of `X-Forwarded-For` that is not a trusted proxy (each
/// proxy appends the address it got the request from, so the entries are
/// read from the last one back, and only as far as trusted proxies wrote
/// them). An entry that is not an address ends the walk: what comes before
/// it was written by no one trusted.
fn client(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|block| block.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let entries = values
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let entries: Vec<&str> = entries.collect();
    for entry in entries.iter().rev().take(FORWARDED_HOPS) {
        let Some(ip) = forwarded_address(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, with a port or in brackets as
/// some proxies write it.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
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
        line.job_id = response.extensions().get::<JobId>().map(|id| id.0);
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
        if let Some((id, role)) = &line.token {
            self.metrics
                .http
                .token_requests
                .get_or_create(&TokenLabels {
                    token_id: id.to_string(),
                    role: role.name(),
                })
                .inc();
        }
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
    client: IpAddr,
    token: Option<(TokenId, Role)>,
    job_id: Option<i64>,
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.enabled {
            let duration_ms = (self.started.elapsed().as_secs_f64() * 1e4).round() / 10.0;
            let token_id = self.token.as_ref().map(|(id, _)| id.as_str());
            tracing::info!(
                target: "backchannel::access",
                method = self.method,
                route = self.route,
                status = self.status,
                duration_ms,
                bytes = self.bytes,
                client = %self.client,
                token_id,
                role = self.token.map(|(_, role)| role.name()),
                job_id = self.job_id,
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

    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

    #[tokio::test]
    async fn routes_are_templates_and_unknown_paths_a_placeholder() {
        let log = AccessLog::new(false, Arc::new(Metrics::new()));
        let request = |path: &str| Request::get(path).body(()).unwrap();
        let route = |path: &str| log.start(&request(path), PEER).line.as_ref().unwrap().route;
        assert_eq!(route("/v1/jobs/42?wait=30"), "/v1/jobs/{id}");
        assert_eq!(route("/v1/jobs/42/result"), "/v1/jobs/{id}/result");
        assert_eq!(route("/wp-admin/secret-token-in-path"), UNMATCHED);
    }

    #[tokio::test]
    async fn answers_are_counted_by_route_status_and_reason() {
        let metrics = Arc::new(Metrics::new());
        let log = AccessLog::new(false, metrics.clone());
        let entry = log.start(&Request::get("/v1/jobs/7").body(()).unwrap(), PEER);
        let mut response = Response::new(String::from("{}"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.extensions_mut().insert(ErrorCode("unauthorized"));
        drop(entry.finish(async { Ok(response) }).await.unwrap());
        drop(log.start(&Request::get("/nope").body(()).unwrap(), PEER));
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

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let trusted = [
            crate::config::cidr("127.0.0.1").unwrap(),
            crate::config::cidr("10.0.0.0/8").unwrap(),
        ];
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let headers = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("x-forwarded-for", value.parse().unwrap());
            }
            headers
        };
        let spoofed = headers(&["6.6.6.6, 203.0.113.7"]);
        // An untrusted peer: its own address, whatever it claims.
        assert_eq!(
            client(ip("198.51.100.1"), &spoofed, &trusted),
            ip("198.51.100.1")
        );
        // Through the trusted proxy: the nearest untrusted entry, not the
        // first one (which the client itself may have written).
        assert_eq!(
            client(ip("127.0.0.1"), &spoofed, &trusted),
            ip("203.0.113.7")
        );
        // Through two trusted proxies, in two headers, one with a port.
        let two = headers(&["6.6.6.6, 203.0.113.7:5555", "10.1.2.3"]);
        assert_eq!(client(ip("127.0.0.1"), &two, &trusted), ip("203.0.113.7"));
        // Garbage ends the walk at the last address a trusted proxy wrote.
        let garbage = headers(&["203.0.113.7, unknown, 10.1.2.3"]);
        assert_eq!(client(ip("127.0.0.1"), &garbage, &trusted), ip("10.1.2.3"));
        // No header: the proxy itself.
        assert_eq!(
            client(ip("::ffff:127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        // No trusted proxy configured: always the peer.
        assert_eq!(client(ip("127.0.0.1"), &spoofed, &[]), ip("127.0.0.1"));
    }
}
