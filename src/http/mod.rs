//! The HTTP edge, in warp's own layering: [`routes`] composes one filter per
//! route (warp's todos example), `handlers` are plain async functions from
//! validated [`input`] to a response, and one `recover` turns every rejection
//! into the JSON error body of [`error`].
//!
//! - [`documented`]: the table of routes ([`ROUTES`], held equal to
//!   `docs/openapi.yaml`) and the gate that serves only those;
//! - [`auth`]: bearer tokens, their reload, the filters of the two roles;
//! - `body`: reading a JSON body within its limits;
//! - [`access`]: the access log and request counts;
//! - [`openapi`]: the document at `/openapi.json`;
//! - [`serve`]: the hyper server loop (header timeout, peers, graceful stop);
//! - [`forward`]: forwarding to the stream's holder, and the hops received.
//!
//! Imports run one way: `routes → handlers → input → error`, and `access →
//! documented → error`; [`error`] imports nothing of the edge but
//! `annotate` (what a response carries for the access log), a leaf.

pub mod access;
mod annotate;
pub mod auth;
mod body;
pub mod documented;
pub mod error;
pub mod forward;
mod handlers;
pub mod input;
pub mod openapi;
mod routes;
pub mod serve;

pub use documented::ROUTES;
pub use routes::routes;
