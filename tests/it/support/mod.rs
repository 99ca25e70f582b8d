#![allow(dead_code)]
//! Test harness: a fresh database per test (`db`), broker instances bound to
//! port 0 and the one way tests send them requests (`instance`), an SSE
//! reader over the agent's parser (`sse`), real processes and clusters
//! (`procs`), a real PgBouncer (`pgbouncer`), a proxy that cuts chosen
//! connections (`proxy`), certificates (`pki`), and what
//! the agent tests run against (`agent`).

pub mod agent;
mod db;
pub mod files;
mod instance;
pub mod pgbouncer;
pub mod pki;
pub mod procs;
pub mod proxy;
pub mod seal;
mod sse;

use std::time::Duration;

pub use db::*;
pub use instance::*;
pub use sse::*;

pub const SUBMITTER: &str = "test-submitter-token-0001";
pub const LISTENER: &str = "test-listener-token-0001";
/// The cluster secret of the test instances (forwarding on by default).
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789abcdef";

/// Retry `check` every 20 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Arrays nested `depth` deep around a 1.
pub fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// The value of one sample line (`name{labels} value`) of an exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

pub const SECOND: Duration = Duration::from_secs(1);
pub const LONG: Duration = Duration::from_secs(10);
