//! The router: one filter function per route (warp's todos example), each
//! naming its method and path, its role, and what it extracts for its
//! handler; [`routes`] puts them behind the gate of documented routes, with
//! the one `recover` and the headers every response carries.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::http::{HeaderValue, header};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::auth::{self, LISTENERS, LiveTokens, Role, STATUS_READERS, SUBMITTERS};
use super::forward::{self, Forwarder, Via};
use super::{body, documented, error, handlers, openapi};
use crate::broker::Broker;

/// A handler's future on the heap. The router's future is one enum over
/// every route's states, as large as the largest, and hyper keeps one per
/// connection: with each handler boxed it stays small, and a request pays
/// for what its own handler holds (a waiting request holds little).
macro_rules! boxed {
    ($handler:path, $($arg:ident),*) => {
        move |$($arg),*| Box::pin($handler($($arg),*))
    };
}

/// Every route of the API.
pub fn routes(
    broker: Arc<Broker>,
    tokens: LiveTokens,
    forwarder: Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let fwd = &forwarder;
    // Each route boxed: warp's filters nest one type per step, and the
    // compiler proves the whole router's future `Unpin` by walking that
    // nesting; unboxed, the release build went past its depth limit.
    let api = submit(&broker, &tokens, fwd)
        .boxed()
        .or(get(&broker, &tokens, fwd).boxed())
        .unify()
        .or(cancel(&broker, &tokens, fwd).boxed())
        .unify()
        .or(answer(&broker, &tokens, fwd).boxed())
        .unify()
        .or(hop(&broker, fwd).boxed())
        .unify()
        .or(stream(&broker, &tokens).boxed())
        .unify()
        .or(listener(&broker, &tokens).boxed())
        .unify()
        .or(stats(&broker, &tokens).boxed())
        .unify()
        .or(metrics(&broker).boxed())
        .unify()
        .or(healthz().boxed())
        .unify()
        .or(readyz(&broker).boxed())
        .unify()
        .or(openapi_json(&broker).boxed())
        .unify();
    let answered = documented::only().and(api).recover(error::recover).unify();
    body::sent()
        .and(answered)
        .map(body::close_after_refusal)
        .map(hygiene)
}

/// `/v1/<rest>` (the default channel) or `/v1/channels/{ch}/<rest>`.
macro_rules! channel_path {
    ($rest:literal) => {
        warp::path!("v1" / $rest)
            .map(|| None)
            .or(warp::path!("v1" / "channels" / String / $rest).map(Some))
            .unify()
    };
}

/// `POST /v1/jobs`, `POST /v1/channels/{ch}/jobs` (submitter).
fn submit(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
    forwarder: &Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    channel_path!("jobs")
        .and(warp::post())
        .and(auth::client(tokens.clone(), SUBMITTERS))
        .and(with(broker))
        .and(query())
        .and(json_body(broker))
        .and(via(forwarder))
        .and_then(boxed!(
            handlers::submit,
            channel,
            client,
            broker,
            query,
            body,
            via
        ))
}

/// `GET /v1/jobs/{id}` (submitter).
fn get(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
    forwarder: &Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    warp::path!("v1" / "jobs" / String)
        .and(warp::get())
        .and(auth::client(tokens.clone(), SUBMITTERS))
        .and(with(broker))
        .and(query())
        .and(via(forwarder))
        .and_then(boxed!(handlers::get, id, client, broker, query, via))
}

/// `DELETE /v1/jobs/{id}` (submitter).
fn cancel(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
    forwarder: &Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    warp::path!("v1" / "jobs" / String)
        .and(warp::delete())
        .and(auth::client(tokens.clone(), SUBMITTERS))
        .and(with(broker))
        .and(via(forwarder))
        .and_then(boxed!(handlers::cancel, id, client, broker, via))
}

/// `POST /v1/jobs/{id}/result` (listener).
fn answer(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
    forwarder: &Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    warp::path!("v1" / "jobs" / String / "result")
        .and(warp::post())
        .and(auth::client(tokens.clone(), LISTENERS))
        .and(with(broker))
        .and(json_body(broker))
        .and(via(forwarder))
        .and_then(boxed!(handlers::answer, id, client, broker, body, via))
}

/// `POST /v1/hop` (another instance of the cluster: signed with the cluster
/// secret, no token).
fn hop(
    broker: &Arc<Broker>,
    forwarder: &Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    let settings = broker.settings();
    let forwarder = forwarder.clone();
    warp::path!("v1" / "hop")
        .and(warp::post())
        .and(with(broker))
        .and(warp::any().map(move || forwarder.clone()))
        .and(warp::header::optional::<String>(forward::SIGNATURE))
        .and(body::bytes(
            settings.max_body.saturating_add(forward::OVERHEAD),
            settings.body_timeout,
        ))
        .and_then(boxed!(handlers::hop, broker, forwarder, signature, bytes))
}

/// Whether and where this request may be forwarded.
fn via(
    forwarder: &Option<Arc<Forwarder>>,
) -> impl Filter<Extract = (Via,), Error = Infallible> + Clone + use<> {
    let forwarder = forwarder.clone();
    warp::header::headers_cloned().map(move |headers| Via::new(forwarder.clone(), &headers))
}

/// `GET /v1/stream`, `GET /v1/channels/{ch}/stream` (listener; the stream
/// keeps its token's grant).
fn stream(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    channel_path!("stream")
        .and(warp::get())
        .and(auth::grant(tokens.clone(), Role::Listener))
        .and(with(broker))
        .and(warp::header::optional::<String>("x-listener-id"))
        .and_then(boxed!(
            handlers::stream,
            channel,
            grant,
            broker,
            listener_id
        ))
}

/// `GET /v1/listener`, `GET /v1/channels/{ch}/listener` (submitter or monitor).
fn listener(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    channel_path!("listener")
        .and(warp::get())
        .and(auth::client(tokens.clone(), STATUS_READERS))
        .and(with(broker))
        .and_then(boxed!(handlers::listener, channel, client, broker))
}

/// `GET /v1/stats`, `GET /v1/channels/{ch}/stats` (submitter or monitor).
fn stats(
    broker: &Arc<Broker>,
    tokens: &LiveTokens,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    channel_path!("stats")
        .and(warp::get())
        .and(auth::client(tokens.clone(), STATUS_READERS))
        .and(with(broker))
        .and_then(boxed!(handlers::stats, channel, client, broker))
}

/// `GET /metrics` (no token).
fn metrics(
    broker: &Arc<Broker>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    warp::path!("metrics")
        .and(warp::get())
        .and(with(broker))
        .and_then(boxed!(handlers::metrics, broker))
}

/// `GET /healthz` (no token).
fn healthz() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    warp::path!("healthz")
        .and(warp::get())
        .and_then(handlers::healthz)
}

/// `GET /readyz` (no token).
fn readyz(
    broker: &Arc<Broker>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    warp::path!("readyz")
        .and(warp::get())
        .and(with(broker))
        .and_then(boxed!(handlers::readyz, broker))
}

/// `GET /openapi.json` (no token): made once per instance.
fn openapi_json(
    broker: &Arc<Broker>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + use<> {
    let document = openapi::body(broker.settings());
    warp::path!("openapi.json")
        .and(warp::get())
        .map(move || openapi::reply(&document))
}

/// The broker, for the handler.
fn with(
    broker: &Arc<Broker>,
) -> impl Filter<Extract = (Arc<Broker>,), Error = Infallible> + Clone + use<> {
    let broker = broker.clone();
    warp::any().map(move || broker.clone())
}

/// The query string as name-value pairs.
fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = Rejection> + Clone + use<> {
    warp::query::<HashMap<String, String>>()
}

/// The JSON body, within this instance's size and time limits.
fn json_body(
    broker: &Arc<Broker>,
) -> impl Filter<Extract = (serde_json::Value,), Error = Rejection> + Clone + use<> {
    let settings = broker.settings();
    body::json(settings.max_body, settings.body_timeout)
}

/// Headers on every response: no sniffing, no caching of API answers.
fn hygiene(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
