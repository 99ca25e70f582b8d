//! The agent's optional local listener (`--health-bind`), for a supervisor
//! or Prometheus on the same host: `/healthz` (200 while the process runs),
//! `/readyz` (200 only while the stream is held and the handler answers,
//! else 503 with the reason) and `/metrics`.
//! It carries no job data and needs no token: bind it to loopback or a
//! private interface.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::{Reply, Response};

use super::AgentError;
use super::status::Reporter;

/// Bind now, so that a wrong address is a start-up error naming the setting.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, AgentError> {
    let refuse = |e: std::io::Error| {
        AgentError::Config(format!(
            "BACKCHANNEL_HEALTH_BIND: cannot listen on {addr}: {e}"
        ))
    };
    let listener = std::net::TcpListener::bind(addr).map_err(refuse)?;
    listener.set_nonblocking(true).map_err(refuse)?;
    Ok(listener)
}

/// Serve until `shutdown`. `handler_down_after`: how long every try to reach
/// the handler may find no one before `/readyz` says `handler_unreachable`.
pub async fn serve(
    listener: std::net::TcpListener,
    reporter: Reporter,
    handler_down_after: Duration,
    stop: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "the health listener cannot be served");
            return;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "health listener (/healthz, /readyz, /metrics)");
    }
    let ready_reporter = reporter.clone();
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| status(StatusCode::OK, "ok"));
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        if !ready_reporter.status().connected {
            status(StatusCode::SERVICE_UNAVAILABLE, "not_connected")
        } else if ready_reporter.handler_down(handler_down_after) {
            status(StatusCode::SERVICE_UNAVAILABLE, "handler_unreachable")
        } else {
            status(StatusCode::OK, "ready")
        }
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let mut response = reporter.metrics().encode().into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    });
    let other = warp::any().map(|| status(StatusCode::NOT_FOUND, "not_found"));
    let routes = healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(other)
        .unify();
    warp::serve(routes)
        .incoming(listener)
        .graceful(stop.cancelled_owned())
        .run()
        .await;
}

fn status(code: StatusCode, text: &'static str) -> Response {
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "status": text })),
        code,
    )
    .into_response()
}
