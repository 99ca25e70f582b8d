//! Handlers: plain async functions from validated input to a response.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::Value;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::access::JobId;
use super::auth::Grant;
use super::error::ApiError;
use super::input;
use crate::broker::{Broker, StreamItem};
use crate::job::Job;

/// 200 with a terminal job, 202 (with its Location) while it is open.
fn job_reply(job: &Job) -> Response {
    let status = if job.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = warp::reply::with_status(warp::reply::json(job), status).into_response();
    response.extensions_mut().insert(JobId(job.id));
    if !job.is_terminal() {
        let location = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)).expect("ascii");
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn reject(error: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(error.into())
}

pub async fn submit(
    broker: Arc<Broker>,
    query: HashMap<String, String>,
    body: Value,
) -> Result<Response, Rejection> {
    let wait = input::wait(query, broker.settings()).map_err(reject)?;
    let new = input::submit(body, broker.settings()).map_err(reject)?;
    let (job, _created) = broker.submit(new, wait).await.map_err(reject)?;
    Ok(job_reply(&job))
}

pub async fn get(
    id: String,
    broker: Arc<Broker>,
    query: HashMap<String, String>,
) -> Result<Response, Rejection> {
    let id = input::job_id(&id).map_err(reject)?;
    let wait = input::wait(query, broker.settings()).map_err(reject)?;
    let job = broker.get(id, wait).await.map_err(reject)?;
    Ok(job_reply(&job))
}

pub async fn cancel(id: String, broker: Arc<Broker>) -> Result<Response, Rejection> {
    let id = input::job_id(&id).map_err(reject)?;
    let job = broker.cancel(id).await.map_err(reject)?;
    Ok(job_answer(&job))
}

pub async fn answer(id: String, broker: Arc<Broker>, body: Value) -> Result<Response, Rejection> {
    let id = input::job_id(&id).map_err(reject)?;
    let answer = input::answer(body, broker.settings()).map_err(reject)?;
    let job = broker.answer(id, answer).await.map_err(reject)?;
    Ok(job_answer(&job))
}

/// 200 with the job, named for the access log.
fn job_answer(job: &Job) -> Response {
    let mut response = warp::reply::json(job).into_response();
    response.extensions_mut().insert(JobId(job.id));
    response
}

/// The listener's stream. It ends when its token is removed by a reload:
/// the body ends, which drops the broker's `JobStream` and releases the lock.
pub async fn stream(
    grant: Grant,
    broker: Arc<Broker>,
    listener_id: Option<String>,
) -> Result<Response, Rejection> {
    let listener_id = input::listener_id(listener_id.as_deref()).map_err(reject)?;
    let jobs = broker.open_stream(listener_id).await.map_err(reject)?;
    let revoked = async move {
        grant.revoked().await;
        tracing::info!("stream ended: its listener token was removed");
    };
    let events = jobs.take_until(revoked).map(|item| {
        let event = match item {
            StreamItem::Retry(delay) => warp::sse::Event::default().retry(delay),
            StreamItem::Keepalive => warp::sse::Event::default().comment(" keepalive"),
            StreamItem::Job { id, data } => warp::sse::Event::default()
                .event("job")
                .id(id.to_string())
                .data(data),
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    let mut response = warp::sse::reply(events).into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

pub async fn listener(broker: Arc<Broker>) -> Result<Response, Rejection> {
    let status = broker.listener_status().await.map_err(reject)?;
    Ok(warp::reply::json(&status).into_response())
}

pub async fn stats(broker: Arc<Broker>) -> Result<Response, Rejection> {
    let stats = broker.stats().await.map_err(reject)?;
    Ok(warp::reply::json(&stats).into_response())
}

pub async fn metrics(broker: Arc<Broker>) -> Result<Response, Rejection> {
    let text = broker.metrics_text().await;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(response)
}

pub async fn healthz() -> Result<Response, Rejection> {
    Ok(warp::reply::json(&serde_json::json!({"status": "ok"})).into_response())
}

pub async fn readyz(broker: Arc<Broker>) -> Result<Response, Rejection> {
    match broker.readiness().await {
        Ok(degraded) => Ok(warp::reply::json(
            &serde_json::json!({"status": "ready", "degraded": degraded}),
        )
        .into_response()),
        Err(reason) => Ok(ApiError::retry_soon("not_ready", reason).into_response()),
    }
}
