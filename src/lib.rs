//! backchannel: a broker that lets a service in a private network receive jobs
//! from an internet-facing one over a single outbound Server-Sent-Events stream.
//!
//! Instances share one PostgreSQL database: jobs live in `backchannel.jobs`,
//! instances wake each other with LISTEN/NOTIFY, and a session advisory lock
//! keeps exactly one listener stream open across the cluster.

pub mod agent;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod hub;
pub mod job;
pub mod listen;
pub mod metrics;
pub mod migrate;
pub mod notifier;
pub mod reaper;
pub mod server;
pub mod store;
pub mod telemetry;
