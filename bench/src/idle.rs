//! The idle cost: many submitters wait with no listener, held by child
//! processes (`holder`); one instance per 18,000 waiting requests (the open
//! files a process may have here).
//! What does waiting cost the database (transactions/s, connections) and the
//! broker (memory)? And does every waiting request survive (no errors)?
//!
//! The window opens `settle` (> 10 s) after every backend of the scratch
//! database was idle, so PostgreSQL has reported the ramp's work before it; the
//! broker's periodic background work (reaper, safety re-check) falls inside the
//! window and is counted. It closes by stopping the broker, whose backends then
//! report the rest. Waiting requests are answered `202` at the broker's graceful stop.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::brokers::Cluster;
use super::holder::{Held, Holder, PER_PROCESS};
use super::pg::{Sampled, Scratch};
use super::plan::Plan;
use super::{mib, procfs};

/// Packets the kernel may queue per CPU during the largest idle scenarios.
const PACKET_BACKLOG: u64 = 16_384;

/// Holders started so far: each gets loopback addresses of its own.
static SCENARIOS: AtomicU8 = AtomicU8::new(0);
use backchannel::config::WakeMode;

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
    /// The broker's RSS once started, before any request.
    pub baseline_rss_mib: f64,
    /// (RSS in the window - baseline) / waiting requests.
    pub kib_per_waiting: f64,
    /// Requests that failed or ended in anything but the `202` of the stop.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Seconds until every request's job was stored.
    pub ramp_seconds: f64,
    /// An autovacuum worker was seen on the scratch database.
    pub autovacuum: bool,
}

/// What one idle scenario's window measured.
struct Window {
    /// Transactions of the scratch database when it opened.
    start: i64,
    /// Transactions when it closed.
    end: i64,
    seconds: f64,
    /// Connections, the most seen during the window.
    connections: i64,
}

/// The brokers' resident memory (KiB): the largest now and at peak, and how
/// much all of them grew over their baselines.
struct Memory {
    rss: u64,
    peak: u64,
    grown: u64,
    baseline: u64,
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
    // One instance and one holder per PER_PROCESS requests: each waiting
    // request is a socket in both.
    let instances = waiting.div_ceil(PER_PROCESS).max(1);
    let _backlog = (waiting > 10_000).then(|| procfs::PacketBacklog::raise(PACKET_BACKLOG));
    let spec = super::brokers::BrokerSpec {
        wake,
        ..plan.broker.clone()
    };
    let cluster = Cluster::start(&spec, instances).await?;
    let (pids, baselines) = baselines(&cluster);

    let ramp_started = Instant::now();
    let rate = plan.idle_ramp_per_sec / instances;
    let mut holders = spawn_holders(&cluster.urls(), waiting, rate)?;
    // Let the requests land (every job stored, then every backend idle at
    // once: an instant with all of them idle happens mid-ramp too).
    let give_up = Duration::from_secs(120);
    if let Err(error) = scratch.stored(waiting, give_up).await {
        stop_sampler.cancel();
        return Err(ramp_failed(error, holders, cluster).await);
    }
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    settle(plan, scratch, wake, give_up).await?;
    let window = window(plan, scratch, wake).await?;
    let memory = memory(&pids, &baselines);

    // Close the holders first: the requests are answered at the brokers' stop.
    for holder in &mut holders {
        holder.close().await;
    }
    cluster.stop().await?;
    let held = collect(holders, Duration::from_secs(60)).await;
    stop_sampler.cancel();
    let sampled = sampler.finish().await?;
    scratch.quiesce().await?;
    let setup = window.start - before;
    let measured = Measured {
        window,
        memory,
        held,
        sampled,
        setup,
        ramp_seconds,
    };
    Ok(Idle::of(plan, wake, waiting, instances, measured))
}

/// Everything one idle scenario measured.
struct Measured {
    window: Window,
    memory: Memory,
    held: Held,
    sampled: Sampled,
    /// Transactions to get the requests waiting.
    setup: i64,
    ramp_seconds: f64,
}

impl Idle {
    /// The row of a scenario of `waiting` requests on `instances` brokers.
    fn of(plan: &Plan, wake: WakeMode, waiting: usize, instances: usize, m: Measured) -> Idle {
        let transactions = m.window.end - m.window.start;
        let per_request = |total: f64| total / waiting.max(1) as f64;
        Idle {
            wake: match wake {
                WakeMode::Notify => "notify".into(),
                WakeMode::Poll => "poll".into(),
            },
            approximate: wake == WakeMode::Poll,
            waiting,
            instances,
            pool_size: plan.broker.pool_size,
            window_seconds: m.window.seconds,
            transactions,
            transactions_per_sec: transactions as f64 / m.window.seconds,
            setup_transactions_per_request: per_request(m.setup as f64),
            peak_connections: m.sampled.peak,
            window_connections: m.window.connections,
            rss_mib: mib(m.memory.rss),
            rss_peak_mib: mib(m.memory.peak),
            baseline_rss_mib: mib(m.memory.baseline),
            kib_per_waiting: per_request(m.memory.grown as f64),
            errors: m.held.errors_of(waiting),
            first_error: m.held.first_error.or_else(|| {
                (m.held.early > 0).then(|| format!("{} requests ended early", m.held.early))
            }),
            ramp_seconds: m.ramp_seconds,
            autovacuum: m.sampled.autovacuum,
        }
    }
}

/// The brokers' pids, and their resident memory (KiB) once started, before any request.
fn baselines(cluster: &Cluster) -> (Vec<u32>, Vec<u64>) {
    let pids = cluster.pids();
    let baselines = pids
        .iter()
        .map(|&pid| procfs::rss_kib(pid).map_or(0, |(rss, _)| rss))
        .collect();
    (pids, baselines)
}

/// The requests did not all land: stop, and say why (the holders know what
/// the brokers answered).
async fn ramp_failed(
    error: anyhow::Error,
    holders: Vec<Holder>,
    cluster: Cluster,
) -> anyhow::Error {
    let first = collect(holders, Duration::from_secs(10)).await.first_error;
    if let Err(stopping) = cluster.stop().await {
        return stopping;
    }
    match first {
        Some(why) => error.context(format!("the first refused request: {why}")),
        None => error,
    }
}

/// One holder per instance, each holding its share of `waiting` requests.
fn spawn_holders(urls: &[String], waiting: usize, rate: usize) -> anyhow::Result<Vec<Holder>> {
    let instances = urls.len();
    let mut holders = Vec::with_capacity(instances);
    for (i, url) in urls.iter().enumerate() {
        let share = waiting / instances + usize::from(i < waiting % instances);
        let offset = i * PER_PROCESS;
        // A source address per holder and per scenario: a socket bound to an
        // address before connecting takes a port of that address for itself,
        // and the ports of the previous scenario's closed connections are
        // still in TIME_WAIT for a minute.
        let source = Ipv4Addr::new(
            127,
            0,
            SCENARIOS.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
            u8::try_from(i + 1).context("too many holders")?,
        );
        holders.push(Holder::spawn(
            std::slice::from_ref(url),
            share,
            source,
            rate,
            offset,
        )?);
    }
    Ok(holders)
}

/// Once every request is stored: take autovacuum's reason to visit away,
/// then wait `settle` so that backends used only during the ramp have
/// reported their work (PostgreSQL 15 flushes an idle backend's counters
/// within 10 s). The broker's own periodic work (a reaper tick per second, a
/// safety re-check every 5 s while requests wait) never lets the database go
/// fully quiet, and belongs in the window: the target counts background
/// tasks. A polling broker is never quiet either: give it two seconds (busy
/// backends report at least once a second).
async fn settle(
    plan: &Plan,
    scratch: &Scratch,
    wake: WakeMode,
    give_up: Duration,
) -> anyhow::Result<()> {
    match wake {
        WakeMode::Notify => {
            scratch.quiet(0.0, give_up).await?;
            scratch.vacuum().await?;
            tokio::time::sleep(plan.settle).await;
        }
        WakeMode::Poll => {
            scratch.vacuum().await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}

/// The measuring window: its transactions and connections.
async fn window(plan: &Plan, scratch: &Scratch, wake: WakeMode) -> anyhow::Result<Window> {
    let start = scratch.transactions().await?;
    let mut connections = 0;
    let opened = Instant::now();
    while opened.elapsed() < plan.idle_window {
        connections = connections.max(scratch.connections().await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Count what the window's work reported: wait as long as before the
    // window (busy backends report within a second, idle ones within 10 s),
    // and read the counter while the brokers still run. A LISTEN session
    // reports its transactions (one per notification it reads) only when it
    // ends: read after the brokers stop, the counter would charge the window
    // with the notifications of the ramp. Nothing ends a job in the window,
    // so nothing is notified there.
    tokio::time::sleep(match wake {
        WakeMode::Notify => plan.settle,
        WakeMode::Poll => Duration::from_secs(2),
    })
    .await;
    let end = scratch.transactions().await?;
    Ok(Window {
        start,
        end,
        seconds: opened.elapsed().as_secs_f64(),
        connections,
    })
}

/// The brokers' memory now, against their `baselines`.
fn memory(pids: &[u32], baselines: &[u64]) -> Memory {
    let mut memory = Memory {
        rss: 0,
        peak: 0,
        grown: 0,
        baseline: baselines.iter().copied().max().unwrap_or(0),
    };
    for (&pid, baseline) in pids.iter().zip(baselines) {
        let (now, peak) = procfs::rss_kib(pid).unwrap_or((0, 0));
        memory.rss = memory.rss.max(now);
        memory.peak = memory.peak.max(peak);
        memory.grown += now.saturating_sub(*baseline);
    }
    memory
}

impl Held {
    /// Errors among `waiting` requests: a request that reported nothing
    /// counts as one too.
    fn errors_of(&self, waiting: usize) -> u64 {
        let unreported = (waiting as u64).saturating_sub(self.accepted + self.errors);
        self.errors + unreported
    }
}

/// Close every holder and add up what they report (waiting up to `patience` each).
async fn collect(holders: Vec<Holder>, patience: Duration) -> Held {
    let mut held = Held::default();
    for mut holder in holders {
        holder.close().await;
        let h = holder.report(patience).await;
        held.accepted += h.accepted;
        held.early += h.early;
        held.errors += h.errors;
        if held.first_error.is_none() {
            held.first_error = h.first_error;
        }
    }
    held
}
