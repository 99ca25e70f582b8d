//! The HTTP edge: routes compose filters, handlers do the work, one `recover`
//! turns every rejection into the JSON error body.

pub mod access;
pub mod auth;
mod body;
pub mod documented;
pub mod error;
mod handlers;
pub mod input;
pub mod openapi;
pub mod serve;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::Filter;
use warp::http::{HeaderValue, header};
use warp::reply::Response;

use self::auth::{LiveTokens, Role};
use crate::broker::Broker;

/// Every route the API answers: (method, path), `{id}` standing for one path
/// segment. Requests for anything else are refused before they reach a route
/// (`documented::only`), and a test holds this table equal to the paths of
/// `docs/openapi.yaml`: a route must be in both to be served.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/result"),
    ("GET", "/v1/stream"),
    ("GET", "/v1/listener"),
    ("GET", "/v1/stats"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

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
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let max_body = broker.settings().max_body;
    let body_timeout = broker.settings().body_timeout;
    let openapi_body = openapi::body(broker.settings());
    let with_broker = warp::any().map(move || broker.clone());
    let submitter = auth::require(tokens.clone(), Role::Submitter);
    let listener = auth::require(tokens.clone(), Role::Listener);
    let stream_grant = auth::grant(tokens, Role::Listener);
    let query = warp::query::<HashMap<String, String>>();

    let submit = warp::path!("v1" / "jobs")
        .and(warp::post())
        .and(submitter.clone())
        .and(with_broker.clone())
        .and(query)
        .and(body::json(max_body, body_timeout))
        .and_then(boxed!(handlers::submit, broker, query, body));
    let get = warp::path!("v1" / "jobs" / String)
        .and(warp::get())
        .and(submitter.clone())
        .and(with_broker.clone())
        .and(query)
        .and_then(boxed!(handlers::get, id, broker, query));
    let cancel = warp::path!("v1" / "jobs" / String)
        .and(warp::delete())
        .and(submitter.clone())
        .and(with_broker.clone())
        .and_then(boxed!(handlers::cancel, id, broker));
    let answer = warp::path!("v1" / "jobs" / String / "result")
        .and(warp::post())
        .and(listener)
        .and(with_broker.clone())
        .and(body::json(max_body, body_timeout))
        .and_then(boxed!(handlers::answer, id, broker, body));
    let stream = warp::path!("v1" / "stream")
        .and(warp::get())
        .and(stream_grant)
        .and(with_broker.clone())
        .and(warp::header::optional::<String>("x-listener-id"))
        .and_then(boxed!(handlers::stream, grant, broker, listener_id));
    let listener_status = warp::path!("v1" / "listener")
        .and(warp::get())
        .and(submitter.clone())
        .and(with_broker.clone())
        .and_then(boxed!(handlers::listener, broker));
    let stats = warp::path!("v1" / "stats")
        .and(warp::get())
        .and(submitter)
        .and(with_broker.clone())
        .and_then(boxed!(handlers::stats, broker));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_broker.clone())
        .and_then(boxed!(handlers::metrics, broker));
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and_then(handlers::healthz);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_broker)
        .and_then(boxed!(handlers::readyz, broker));
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .map(move || openapi::reply(&openapi_body));

    let api = submit
        .or(get)
        .unify()
        .or(cancel)
        .unify()
        .or(answer)
        .unify()
        .or(stream)
        .unify()
        .or(listener_status)
        .unify()
        .or(stats)
        .unify()
        .or(metrics)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(openapi)
        .unify();
    let answered = documented::only().and(api).recover(error::recover).unify();
    body::sent()
        .and(answered)
        .map(body::close_after_refusal)
        .map(hygiene)
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
