//! backchannel: a broker that lets a service in a private network receive jobs
//! from an internet-facing one over a single outbound Server-Sent-Events stream.
//!
//! Instances share one PostgreSQL database: jobs live in `backchannel.jobs`,
//! instances wake each other with LISTEN/NOTIFY, and a session advisory lock
//! keeps exactly one listener stream open across the cluster.
//!
//! - [`app`]: one instance, started, run and shut down;
//! - [`preflight`]: what `serve` checks before it serves (URLs, sessions, schema, rights);
//! - [`admin`]: `backchannel migrate` (apply, print, grant);
//! - [`config`]: `serve`'s settings;
//! - [`job`]: the contract's job;
//! - [`json`]: what JSON may be stored and sent;
//! - [`http`]: the edge (routes, handlers, tokens, bodies, errors);
//! - [`broker`]: the domain, one file per step of a job's life;
//! - [`wake`]: who waits for what, LISTEN in, NOTIFY out;
//! - [`store`]: every database call;
//! - [`agent`]: the listener side as a ready program;
//! - [`client`]: `backchannel submit` and `status`;
//! - [`process`]: the process's memory and file descriptors for `/metrics`;
//! - [`manual`]: the man pages and shell completions, from the command line's definition.

pub mod admin;
pub mod agent;
pub mod app;
pub mod backoff;
pub mod broker;
pub mod client;
pub mod config;
pub mod http;
pub mod job;
pub mod json;
pub mod manual;
pub mod metrics;
pub mod preflight;
pub mod process;
pub mod seal;
pub mod store;
pub mod telemetry;
pub mod wake;
