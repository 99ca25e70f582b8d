//! The accept loop: hyper with the timeouts warp's own server does not expose.
//! A client that sends its request headers too slowly, or keeps an idle
//! keep-alive connection open past the header timeout, is disconnected; a
//! peer that vanished without closing its connection is noticed by the kernel
//! within a bound ([`PeerBound`]).

use std::convert::Infallible;
use std::str::FromStr;
use std::time::Duration;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use warp::Filter;
use warp::http::header::{self, HeaderName};
use warp::http::{HeaderMap, HeaderValue, Request, Uri};
use warp::reply::Response;

/// How long a peer may stay silent before its connection is given up: a
/// listener whose host lost power, or a NAT or firewall that dropped the
/// connection's state without a word, would otherwise keep the stream (and
/// its lock) or a waiting request's place for the ~15 minutes the kernel
/// retransmits. Data unacknowledged for `2 x heartbeat` ends the connection
/// (`TCP_USER_TIMEOUT`; the stream sends a keepalive every heartbeat), and an
/// idle connection is probed after one heartbeat (TCP keepalive), so a
/// vanished submitter is let go within about three heartbeats too.
#[derive(Debug, Clone, Copy)]
pub struct PeerBound {
    pub heartbeat: Duration,
}

impl PeerBound {
    fn apply(&self, stream: &tokio::net::TcpStream) -> std::io::Result<()> {
        let socket = socket2::SockRef::from(stream);
        let probe = (self.heartbeat / 3).max(Duration::from_secs(1));
        socket.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(self.heartbeat)
                .with_interval(probe)
                .with_retries(3),
        )?;
        socket.set_tcp_user_timeout(Some(self.heartbeat * 2))
    }
}

/// Serve `routes` on `listener` until `shutdown`, then let open connections
/// finish (the caller bounds how long).
///
/// HTTP/1.1 only (SSE and long polls need nothing else; TLS and HTTP/2 belong
/// to the proxy in front). Each connection's read buffer is hyper's minimum
/// (8 KiB): requests are small, bodies are read in chunks anyway.
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    access: super::access::AccessLog,
    header_timeout: Duration,
    peers: PeerBound,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(8192);
    let graceful = GracefulShutdown::new();
    let service = warp::service(routes);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        if let Err(error) = peers.apply(&stream) {
            tracing::debug!(%error, "cannot bound silent peers on a connection");
        }
        let service = service.clone();
        let access = access.clone();
        let handler = service_fn(move |request: Request<Incoming>| {
            let mut service = service.clone();
            let entry = access.start(&request, peer);
            // On the heap: hyper keeps the service's future in an allocation
            // of its own size for the whole life of the connection.
            entry.finish(Box::pin(service.call(detached(request))))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), handler);
        // `map`, not an async block: the block would hold the connection
        // twice (once captured, once awaited), for as long as it is open.
        let connection = graceful.watch(connection).map(|outcome| {
            if let Err(error) = outcome {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
        tokio::spawn(connection);
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The request headers the API reads: the token, the body's type and length,
/// the listener id. A request keeps its headers for as long as it is handled
/// (a waiting request for up to the longest wait), so the others are dropped
/// before routing: a proxy's `X-Forwarded-*`, a browser's dozen. A route that
/// reads another header must add it here.
const READ_HEADERS: [HeaderName; 7] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("x-listener-id"),
    HeaderName::from_static(super::forward::SIGNATURE),
    HeaderName::from_static(super::forward::FORWARDED),
];

/// The request with its URI and the header values the API reads copied out
/// of hyper's read buffer. hyper hands them over as slices of that buffer,
/// which would keep the whole buffer (8 KiB) alive for as long as the request
/// is handled: a waiting request holds its connection for up to the longest
/// wait, next to the buffer hyper allocates to notice the client going away.
/// Copying costs a few hundred bytes; holding the buffer cost 8 KiB per
/// waiting request.
fn detached<B>(request: Request<B>) -> Request<B> {
    let (mut parts, body) = request.into_parts();
    if let Some(path) = parts.uri.path_and_query() {
        // An origin-form target (the only form the routes answer) copies as is;
        // anything else keeps its original, which only costs memory.
        if parts.uri.scheme().is_none() {
            if let Ok(uri) = Uri::from_str(path.as_str()) {
                parts.uri = uri;
            }
        }
    }
    let mut headers = HeaderMap::new();
    for name in READ_HEADERS {
        for value in parts.headers.get_all(&name) {
            let mut copy =
                HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
            copy.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), copy);
        }
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn detached_requests_hold_nothing_of_the_read_buffer() {
        let buffer = Bytes::from(b"/v1/jobs?wait=30 Bearer abc a\xff".to_vec());
        let mut request = Request::new(());
        *request.uri_mut() = Uri::from_maybe_shared(buffer.slice(0..16)).unwrap();
        let headers = request.headers_mut();
        let mut token = HeaderValue::from_maybe_shared(buffer.slice(17..27)).unwrap();
        token.set_sensitive(true);
        headers.insert("authorization", token);
        headers.append(
            "content-type",
            HeaderValue::from_maybe_shared(buffer.slice(28..29)).unwrap(),
        );
        headers.append(
            "content-type",
            HeaderValue::from_maybe_shared(buffer.slice(29..30)).unwrap(),
        );
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_maybe_shared(buffer.slice(28..29)).unwrap(),
        );
        assert!(!buffer.is_unique());

        let request = detached(request);

        assert!(
            buffer.is_unique(),
            "a part of the request still points into the buffer"
        );
        assert_eq!(request.uri(), "/v1/jobs?wait=30");
        assert_eq!(request.headers()["authorization"], "Bearer abc");
        assert!(request.headers()["authorization"].is_sensitive());
        let repeated: Vec<_> = request.headers().get_all("content-type").iter().collect();
        assert_eq!(repeated, [&b"a"[..], &b"\xff"[..]]);
        assert!(
            !request.headers().contains_key("x-forwarded-for"),
            "a header the API does not read is not kept"
        );
    }
}
