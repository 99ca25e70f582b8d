//! The idle cost: many submitters wait on one instance with no listener.
//! What does waiting cost the database (transactions/s, connections) and the
//! broker (memory)? And does every waiting request survive (no errors)?
//!
//! The window opens `settle` (> 10 s) after every backend of the scratch
//! database was idle, so PostgreSQL has reported the ramp's work before it; the
//! broker's periodic background work (reaper, safety re-check) falls inside the
//! window and is counted. It closes by stopping the broker, whose backends then
//! report the rest. Waiting requests are answered `202` at the broker's graceful stop.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::brokers::{Cluster, SUBMITTER_TOKEN};
use super::pg::Scratch;
use super::plan::Plan;
use super::{mib, procfs};
use backchannel::config::WakeMode;

/// How long each request asks to wait (far beyond the window).
const WAIT_SECS: u64 = 600;

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    /// "notify", or "poll" (the seed design, for comparison).
    pub wake: String,
    pub waiting: usize,
    pub instances: usize,
    pub pool_size: usize,
    pub window_seconds: f64,
    /// Transactions in the window (closing it by stopping the broker included).
    /// Exact in notify mode; in poll mode the broker is never quiet, so the
    /// count at the window's start may lack up to a second of activity.
    pub transactions: i64,
    pub approximate: bool,
    pub transactions_per_sec: f64,
    /// Transactions to get the requests waiting (submit + first read), per request.
    pub setup_transactions_per_request: f64,
    /// Connections to the scratch database: the most at any sample, whole scenario.
    pub peak_connections: i64,
    /// Connections during the window.
    pub window_connections: i64,
    pub rss_mib: f64,
    pub rss_peak_mib: f64,
    /// Requests that failed or ended in anything but the `202` of the stop.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Seconds to get all requests sent.
    pub ramp_seconds: f64,
    /// An autovacuum worker was seen on the scratch database.
    pub autovacuum: bool,
}

#[derive(Default)]
struct Outcomes {
    /// Answered before the window closed (should not happen: nobody answers).
    early: u64,
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(
    plan: &Plan,
    scratch: &Scratch,
    wake: WakeMode,
    waiting: usize,
) -> anyhow::Result<Idle> {
    scratch.reset().await?;
    let before = scratch.quiesce().await?;
    let stop_sampler = CancellationToken::new();
    let sampler = scratch.sampler(stop_sampler.clone()).await?;
    let spec = super::brokers::BrokerSpec {
        wake,
        ..plan.broker.clone()
    };
    let cluster = Cluster::start(&spec, 1).await?;
    let url = cluster.urls().remove(0);
    let pid = cluster.pids()[0];

    // One connection per request, none kept after its answer.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(20))
        .build()?;
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let closing = CancellationToken::new();
    let ramp_started = Instant::now();
    let per_tick = (plan.idle_ramp_per_sec / 100).max(1);
    let mut requests = Vec::with_capacity(waiting);
    for n in 0..waiting {
        if n > 0 && n % per_tick == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (client, url, outcomes, closing) = (
            client.clone(),
            url.clone(),
            outcomes.clone(),
            closing.clone(),
        );
        requests.push(tokio::spawn(async move {
            let response = client
                .post(format!("{url}/v1/jobs?wait={WAIT_SECS}"))
                .bearer_auth(SUBMITTER_TOKEN)
                .json(&json!({"kind": "bench.idle", "payload": {"n": n}, "timeout": WAIT_SECS}))
                .send()
                .await;
            let mut outcomes = outcomes.lock().expect("outcomes lock");
            let error = match response {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED && closing.is_cancelled() => {
                    outcomes.accepted += 1;
                    return;
                }
                Ok(r) => format!("answered {} while waiting", r.status()),
                Err(e) => format!("request failed: {e}"),
            };
            if !closing.is_cancelled() {
                outcomes.early += 1;
            }
            outcomes.errors += 1;
            outcomes.first_error.get_or_insert(error);
        }));
    }
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();

    // Settle: let the requests land (every job stored, then every backend idle
    // at once: an instant with all of them idle happens mid-ramp too), take
    // autovacuum's reason to visit away, then wait `settle` so that backends
    // used only during the ramp have reported their work (PostgreSQL 15 flushes
    // an idle backend's counters within 10 s). The broker's own periodic work
    // (a reaper tick per second, a safety re-check every 5 s while requests
    // wait) never lets the database go fully quiet, and belongs in the window:
    // the target counts background tasks. A polling broker is never quiet
    // either: give it two seconds (busy backends report at least once a second).
    let give_up = Duration::from_secs(120);
    match wake {
        WakeMode::Notify => {
            scratch.stored(waiting, give_up).await?;
            scratch.quiet(0.0, give_up).await?;
            scratch.vacuum().await?;
            tokio::time::sleep(plan.settle).await;
        }
        WakeMode::Poll => {
            scratch.vacuum().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let window_start = scratch.transactions().await?;
    let setup = window_start - before;
    let mut window_connections = 0;
    let opened = Instant::now();
    while opened.elapsed() < plan.idle_window {
        window_connections = window_connections.max(scratch.connections().await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let window_seconds = opened.elapsed().as_secs_f64();
    let (rss, rss_peak) = procfs::rss_kib(pid).unwrap_or((0, 0));

    closing.cancel();
    cluster.stop().await?;
    for request in requests {
        if tokio::time::timeout(Duration::from_secs(30), request)
            .await
            .is_err()
        {
            let mut outcomes = outcomes.lock().expect("outcomes lock");
            outcomes.errors += 1;
            outcomes
                .first_error
                .get_or_insert("a request did not end after the broker stopped".into());
        }
    }
    stop_sampler.cancel();
    let sampled = sampler.finish().await?;
    let after = scratch.quiesce().await?;
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes lock"));
    let transactions = after - window_start;
    // A request task that panicked reported nothing: count it too.
    let unreported = (waiting as u64).saturating_sub(outcomes.accepted + outcomes.errors);
    let errors = outcomes.errors + unreported;
    Ok(Idle {
        wake: match wake {
            WakeMode::Notify => "notify".into(),
            WakeMode::Poll => "poll".into(),
        },
        approximate: wake == WakeMode::Poll,
        waiting,
        instances: 1,
        pool_size: plan.broker.pool_size,
        window_seconds,
        transactions,
        transactions_per_sec: transactions as f64 / window_seconds,
        setup_transactions_per_request: setup as f64 / waiting.max(1) as f64,
        peak_connections: sampled.peak,
        window_connections,
        rss_mib: mib(rss),
        rss_peak_mib: mib(rss_peak),
        errors,
        first_error: outcomes.first_error.or_else(|| {
            (outcomes.early > 0).then(|| format!("{} requests ended early", outcomes.early))
        }),
        ramp_seconds,
        autovacuum: sampled.autovacuum,
    })
}
