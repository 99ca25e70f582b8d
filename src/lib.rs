//! backchannel: a broker that lets a service in a private network receive jobs
//! from an internet-facing one over a single outbound Server-Sent-Events stream.
//!
//! Instances share one PostgreSQL database: jobs live in `backchannel.jobs`,
//! instances wake each other with LISTEN/NOTIFY, and a session advisory lock
//! keeps exactly one listener stream open across the cluster.
//!
//! - [`app`]: one instance (`serve`), started after its preflight, run and shut down;
//! - [`cli`]: the command line (`submit`, `status`, `migrate`, the manual) and its dispatch;
//! - [`config`]: `serve`'s settings;
//! - [`job`]: the contract's job;
//! - [`json`]: what JSON may be stored and sent;
//! - [`http`]: the edge (routes, handlers, tokens, bodies, errors);
//! - [`broker`]: the domain, one file per step of a job's life;
//! - [`wake`]: who waits for what, LISTEN in, NOTIFY out;
//! - [`store`]: every database call and every SQL statement;
//! - [`agent`]: the listener side as a ready program;
//! - [`telemetry`]: logging, metrics and the process's own resources;
//! - [`backoff`]: waiting before the next attempt (every reconnecting loop).

pub mod agent;
pub mod app;
pub mod backoff;
pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod job;
pub mod json;
pub mod store;
pub mod telemetry;
pub mod wake;
