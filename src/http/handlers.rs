//! Handlers: plain async functions from validated input to a response.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::annotate::JobId;
use super::auth::{Client, Grant};
use super::error::ApiError;
use super::forward::{self, Forwarder, Hop, Op, Via};
use super::input;
use crate::broker::{Broker, BrokerError, StreamItem};
use crate::job::{ChannelId, DEFAULT_CHANNEL_NAME, Job, JobState, Scope};
use crate::store::ChannelRow;
use crate::telemetry::metrics::ReasonLabel;
use crate::wake::WaitPermit;

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

/// The channel a path names (`None`: the default channel), if the client's
/// token may use it and it exists; else 404, the same for both, so that a
/// token learns nothing of the channels outside its scope.
async fn channel_for(
    broker: &Broker,
    client: &Client,
    name: Option<String>,
) -> Result<ChannelRow, Rejection> {
    let name = name.unwrap_or_else(|| DEFAULT_CHANNEL_NAME.to_owned());
    let unknown = || {
        reject(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such channel",
        ))
    };
    if !client.may_use(&name) {
        return Err(unknown());
    }
    broker
        .channel(&name)
        .await
        .map_err(reject)?
        .ok_or_else(unknown)
}

/// The channels the client's token may use, as ids.
async fn scope_of(broker: &Broker, client: &Client) -> Result<Scope, Rejection> {
    broker
        .scope(client.channels.as_deref())
        .await
        .map_err(reject)
}

pub async fn submit(
    channel: Option<String>,
    client: Client,
    broker: Arc<Broker>,
    query: HashMap<String, String>,
    body: Value,
    via: Via,
) -> Result<Response, Rejection> {
    let row = channel_for(&broker, &client, channel).await?;
    let mut wait = input::wait(query.clone(), broker.settings()).map_err(reject)?;
    // A forwarded wait holds one of this instance's waiting places too (its
    // client's socket and the hop's are here); with none left, the request
    // stays here, where the usual rules answer it.
    let (room, mut place) = waiting_place(&broker, wait, Some(row.id));
    let target = via.target(&broker).filter(|_| room);
    let forwardable = target.is_some().then(|| body.clone());
    let mut new = input::submit(body, broker.settings()).map_err(reject)?;
    new.channel = row.id;
    if let (Some((forwarder, holder)), Some(mut body)) = (target, forwardable) {
        // A key, so that a retry after a lost forward finds the job.
        let key = new
            .idempotency_key
            .get_or_insert_with(|| forward::new_key(broker.instance()))
            .clone();
        body["idempotency_key"] = Value::String(key);
        let started = Instant::now();
        let hop = Hop {
            op: Op::Submit,
            id: None,
            query: &query,
            body: Some(body),
            wait,
            client: &client,
            channel: Some(&row.name),
        };
        let sent = forwarder.send(&broker, &holder, hop).await;
        drop(place.take());
        match relayed(&broker, Op::Submit, sent, wait, started).await? {
            Ok(response) => return Ok(response),
            Err(left) => wait = left,
        }
    }
    // The local path takes its own place.
    drop(place);
    let (job, _created) = broker.submit(new, wait).await.map_err(reject)?;
    Ok(job_reply(&job))
}

pub async fn get(
    id: String,
    client: Client,
    broker: Arc<Broker>,
    query: HashMap<String, String>,
    via: Via,
) -> Result<Response, Rejection> {
    let job_id = input::job_id(&id).map_err(reject)?;
    let mut wait = input::wait(query.clone(), broker.settings()).map_err(reject)?;
    // Only a wait is worth a hop: a plain read costs one statement anywhere.
    // (The job's channel is not known yet: the place is the instance's; the
    // channel's own limit applies where the wait is done.)
    let (room, mut place) = waiting_place(&broker, wait, None);
    let target = via.target(&broker).filter(|_| room && place.is_some());
    if let Some((forwarder, holder)) = target {
        let started = Instant::now();
        let hop = Hop {
            op: Op::Get,
            id: Some(&id),
            query: &query,
            body: None,
            wait,
            client: &client,
            channel: None,
        };
        let sent = forwarder.send(&broker, &holder, hop).await;
        drop(place.take());
        match relayed(&broker, Op::Get, sent, wait, started).await? {
            Ok(response) => return Ok(response),
            Err(left) => wait = left,
        }
    }
    // The local path takes its own place.
    drop(place);
    let scope = scope_of(&broker, &client).await?;
    let job = broker.get(job_id, wait, &scope).await.map_err(reject)?;
    Ok(job_reply(&job))
}

pub async fn cancel(
    id: String,
    client: Client,
    broker: Arc<Broker>,
    via: Via,
) -> Result<Response, Rejection> {
    let job_id = input::job_id(&id).map_err(reject)?;
    let target = via.target(&broker);
    let tried = target.is_some();
    if let Some((forwarder, holder)) = target {
        let none = HashMap::new();
        let hop = Hop {
            op: Op::Cancel,
            id: Some(&id),
            query: &none,
            body: None,
            wait: Duration::ZERO,
            client: &client,
            channel: None,
        };
        let sent = forwarder.send(&broker, &holder, hop);
        if let Ok(response) = relayed(
            &broker,
            Op::Cancel,
            sent.await,
            Duration::ZERO,
            Instant::now(),
        )
        .await?
        {
            return Ok(response);
        }
    }
    let scope = scope_of(&broker, &client).await?;
    match broker.cancel(job_id, scope).await {
        Ok(job) => Ok(job_answer(&job)),
        // The forward may have cancelled it before its answer was lost: a
        // cancelled job is what this request asked for.
        Err(BrokerError::AlreadyTerminal(job)) if tried && job.state == JobState::Cancelled => {
            Ok(job_answer(&job))
        }
        Err(error) => Err(reject(error)),
    }
}

pub async fn answer(
    id: String,
    client: Client,
    broker: Arc<Broker>,
    body: Value,
    via: Via,
) -> Result<Response, Rejection> {
    let job_id = input::job_id(&id).map_err(reject)?;
    let target = via.target(&broker);
    let forwardable = target.is_some().then(|| body.clone());
    let answer = input::answer(body, broker.settings()).map_err(reject)?;
    if let (Some((forwarder, holder)), Some(body)) = (target, forwardable) {
        let none = HashMap::new();
        let hop = Hop {
            op: Op::Answer,
            id: Some(&id),
            query: &none,
            body: Some(body),
            wait: Duration::ZERO,
            client: &client,
            channel: None,
        };
        let sent = forwarder.send(&broker, &holder, hop);
        if let Ok(response) = relayed(
            &broker,
            Op::Answer,
            sent.await,
            Duration::ZERO,
            Instant::now(),
        )
        .await?
        {
            return Ok(response);
        }
    }
    let scope = scope_of(&broker, &client).await?;
    let job = broker.answer(job_id, answer, scope).await.map_err(reject)?;
    Ok(job_answer(&job))
}

/// What a forward brought: the holder's answer to relay; or, when the holder
/// answered an open job before the request's wait was over (it began to
/// shut down), that job waited for here for the rest; or, when the forward
/// failed, the wait left for doing it all here (`Err`).
async fn relayed(
    broker: &Arc<Broker>,
    op: Op,
    outcome: Result<Response, forward::Fallback>,
    wait: Duration,
    started: Instant,
) -> Result<Result<Response, Duration>, Rejection> {
    let metrics = &broker.metrics().forward;
    let left = wait.saturating_sub(started.elapsed());
    match outcome {
        Ok(response) => {
            metrics.forwarded(op.route(), "relayed");
            match forward::job_of(&response).filter(|_| left > EARLY) {
                Some(id) => {
                    // The holder answered it to this client: it is in scope.
                    let job = broker.get(id, left, &Scope::All).await.map_err(reject)?;
                    Ok(Ok(job_reply(&job)))
                }
                None => Ok(Ok(response)),
            }
        }
        Err(reason) => {
            metrics.forwarded(op.route(), "fallback");
            metrics.fell_back(reason);
            Ok(Err(left))
        }
    }
}

/// For a request that would wait, one of this instance's waiting places,
/// held while it is forwarded; `false` when none is left (the request then
/// stays here, where the usual rules answer it). A request that would not
/// wait needs none.
fn waiting_place(
    broker: &Broker,
    wait: Duration,
    channel: Option<ChannelId>,
) -> (bool, Option<WaitPermit>) {
    if wait.is_zero() {
        return (true, None);
    }
    match broker.reserve(channel) {
        Ok(permit) => (true, Some(permit)),
        Err(_) => (false, None),
    }
}

/// A relayed open job with more than this left of the wait was answered
/// early by the holder: the rest is waited for here.
const EARLY: Duration = Duration::from_millis(100);

/// `POST /v1/hop`: a request another instance of the cluster forwarded
/// (docs/scaling.md), run here as if its client had sent it here. Refused
/// with 403 `hop_refused` unless signed with the cluster secret, sent to this
/// instance's advertised address, and recent.
pub async fn hop(
    broker: Arc<Broker>,
    forwarder: Option<Arc<Forwarder>>,
    signature: Option<String>,
    bytes: bytes::Bytes,
) -> Result<Response, Rejection> {
    let metrics = &broker.metrics().forward;
    let Some(forwarder) = forwarder else {
        metrics
            .refused
            .get_or_create(&ReasonLabel { reason: "off" })
            .inc();
        return Err(reject(forward::refused(
            "forwarding is off on this instance (BACKCHANNEL_CLUSTER_SECRET and BACKCHANNEL_PEERS)",
        )));
    };
    let envelope = match forwarder.open(&bytes, signature.as_deref()) {
        Ok(envelope) => envelope,
        Err((reason, message)) => {
            metrics.refused.get_or_create(&ReasonLabel { reason }).inc();
            // Anyone can send these: at most one WARN line per 10 s (the
            // metric counts them all).
            if forward::warn_now() {
                tracing::warn!(reason, %message, "forwarded request refused");
            } else {
                tracing::debug!(reason, %message, "forwarded request refused");
            }
            return Err(reject(forward::refused(message)));
        }
    };
    metrics.received.inc();
    let here = Via::new(None, &HeaderMap::new());
    let client = envelope.client();
    let id = envelope.id.unwrap_or_default();
    let body = envelope.body.unwrap_or(Value::Null);
    let done = match envelope.op {
        Op::Submit => submit(envelope.channel, client, broker, envelope.query, body, here).await,
        Op::Get => get(id, client, broker, envelope.query, here).await,
        Op::Cancel => cancel(id, client, broker, here).await,
        Op::Answer => answer(id, client, broker, body, here).await,
    };
    // Refusals too are signed: the sender relays them as the holder's.
    let response = done.unwrap_or_else(|rejection| match rejection.find::<ApiError>() {
        Some(error) => error.clone().into_response(),
        None => ApiError::internal().into_response(),
    });
    let request = signature.unwrap_or_default();
    Ok(forwarder.signed(&request, response).await)
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
    channel: Option<String>,
    grant: Grant,
    broker: Arc<Broker>,
    listener_id: Option<String>,
) -> Result<Response, Rejection> {
    let row = channel_for(&broker, &grant.client(), channel).await?;
    let listener_id = input::listener_id(listener_id.as_deref()).map_err(reject)?;
    let jobs = broker
        .open_stream(row.id, listener_id)
        .await
        .map_err(reject)?;
    let revoked = async move {
        grant.revoked(row.name).await;
        tracing::info!("stream ended: its listener token was removed or lost its channel");
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

pub async fn listener(
    channel: Option<String>,
    client: Client,
    broker: Arc<Broker>,
) -> Result<Response, Rejection> {
    let row = channel_for(&broker, &client, channel).await?;
    let status = broker.listener_status(row.id).await.map_err(reject)?;
    Ok(warp::reply::json(&status).into_response())
}

pub async fn stats(
    channel: Option<String>,
    client: Client,
    broker: Arc<Broker>,
) -> Result<Response, Rejection> {
    let row = channel_for(&broker, &client, channel).await?;
    let stats = broker.stats(row.id).await.map_err(reject)?;
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
