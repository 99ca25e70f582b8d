//! One round-trip scenario: brokers (or the raw SQL floor), the simulated
//! listener and the submitters (sealing and opening, in the sealed ones), measured from a database with no backend
//! connected to one with no backend connected again, so its transaction
//! count is exact.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::batches::{self, Batches};
use super::brokers::{BrokerSpec, Cluster, LISTENER_TOKEN, SUBMITTER_TOKEN};
use super::listener::Listener;
use super::load::{self, LoadOutcome, Window};
use super::pg::Scratch;
use super::plan::{Plan, Scenario};
use super::procfs::{self, CpuSnapshot};
use super::sealing::Sealing;
use super::stats::Latency;
use super::{floor, mib};
use backchannel::config::WakeMode;

/// Seconds a submitter waits for its answer (and the job's timeout).
const WAIT_SECS: f64 = 30.0;

/// CPU used during the measuring window, as % of one core and per round trip.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    pub broker_pct: f64,
    pub postgres_pct: f64,
    pub bench_pct: f64,
    /// Everything else on the machine (other engineers' builds, PostgreSQL's
    /// background processes): the noise indicator.
    pub other_pct: f64,
    pub broker_us_per_round_trip: f64,
    pub postgres_us_per_round_trip: f64,
    pub bench_us_per_round_trip: f64,
}

/// The numbers of one round-trip scenario.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub scenario: String,
    /// "notify", "poll", "raw-sql", or "sealed" (notify, with every payload
    /// and answer sealed end to end).
    pub wake: String,
    pub instances: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub round_trips_per_sec: f64,
    pub latency: Latency,
    /// Round trips inside the measuring window.
    pub measured: u64,
    /// Round trips over the whole life of the brokers (warm-up included).
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Transactions in the scratch database over the brokers' whole life
    /// (start, warm-up, window and stop).
    pub transactions: i64,
    pub transactions_per_round_trip: f64,
    pub peak_connections: i64,
    /// Highest peak resident memory of an instance (VmHWM).
    pub broker_rss_peak_mib: Option<f64>,
    pub cpu: CpuUse,
    /// An autovacuum worker was seen on the scratch database (its
    /// transactions are in `transactions` too).
    pub autovacuum: bool,
    /// Jobs per transaction, from the brokers' own histograms (not the floor).
    pub batches: Option<Batches>,
}

impl RoundTrips {
    pub fn is_broker(&self, wake: &str, instances: usize, concurrency: usize) -> bool {
        self.wake == wake && self.instances == instances && self.concurrency == concurrency
    }
}

/// Run one round-trip scenario (brokers or the floor).
pub async fn run(
    plan: &Plan,
    scratch: &Scratch,
    scenario: &Scenario,
) -> anyhow::Result<RoundTrips> {
    scratch.reset().await?;
    let before = scratch.quiesce().await?;
    let stop_sampler = CancellationToken::new();
    let sampler = scratch.sampler(stop_sampler.clone()).await?;
    let window = Window::starting_now(plan.warmup, plan.duration);
    let (wake, instances, concurrency, outcome, cpu, rss, batches) = match *scenario {
        Scenario::Broker {
            wake,
            instances,
            concurrency,
            forwarding,
        } => {
            let spec = BrokerSpec {
                wake,
                forwarding,
                ..plan.broker.clone()
            };
            let (outcome, cpu, rss, batches) =
                with_brokers(&spec, scratch, (instances, concurrency), plan, None).await?;
            let wake = super::plan::wake_label(wake, forwarding);
            (
                wake,
                instances,
                concurrency,
                outcome,
                cpu,
                rss,
                Some(batches),
            )
        }
        Scenario::Sealed { concurrency } => {
            let spec = BrokerSpec {
                wake: WakeMode::Notify,
                ..plan.broker.clone()
            };
            let sealing = Some(Arc::new(Sealing::new()?));
            let (outcome, cpu, rss, batches) =
                with_brokers(&spec, scratch, (1, concurrency), plan, sealing).await?;
            ("sealed", 1, concurrency, outcome, cpu, rss, Some(batches))
        }
        Scenario::Floor { concurrency } => {
            let load = floor::run(&scratch.url, plan.broker.pool_size, concurrency, window);
            let (outcome, cpu) = tokio::join!(load, cpu_probe(window, Vec::new(), scratch));
            (
                "raw-sql",
                0,
                concurrency,
                outcome?,
                cpu.unwrap_or_default(),
                None,
                None,
            )
        }
        Scenario::Idle { .. } => unreachable!("idle scenarios run in idle.rs"),
    };
    stop_sampler.cancel();
    let sampled = sampler.finish().await?;
    let after = scratch.quiesce().await?;
    let transactions = after - before;
    let seconds = window.seconds();
    let measured = outcome.measured;
    let per_rt = |pct: f64| {
        if measured == 0 {
            0.0
        } else {
            pct / 100.0 * seconds * 1e6 / measured as f64
        }
    };
    let cpu = CpuUse {
        broker_us_per_round_trip: per_rt(cpu.broker_pct),
        postgres_us_per_round_trip: per_rt(cpu.postgres_pct),
        bench_us_per_round_trip: per_rt(cpu.bench_pct),
        ..cpu
    };
    Ok(RoundTrips {
        scenario: scenario.label(),
        wake: wake.into(),
        instances,
        concurrency,
        seconds,
        round_trips_per_sec: measured as f64 / seconds,
        latency: Latency::of(&outcome.histogram),
        measured,
        completed: outcome.completed,
        errors: outcome.errors,
        first_error: outcome.first_error,
        transactions,
        transactions_per_round_trip: if outcome.completed == 0 {
            0.0
        } else {
            transactions as f64 / outcome.completed as f64
        },
        peak_connections: sampled.peak,
        broker_rss_peak_mib: rss,
        cpu,
        autovacuum: sampled.autovacuum,
        batches,
    })
}

/// Start the brokers and the listener, run the submitters, stop everything.
/// With `sealing`, the submitters seal and open, the listener opens and seals.
async fn with_brokers(
    spec: &BrokerSpec,
    scratch: &Scratch,
    (instances, concurrency): (usize, usize),
    plan: &Plan,
    sealing: Option<Arc<Sealing>>,
) -> anyhow::Result<(LoadOutcome, CpuUse, Option<f64>, Batches)> {
    let cluster = Cluster::start(spec, instances).await?;
    let urls = cluster.urls();
    let listener = Listener::start(
        load::http_client(1),
        &urls[0],
        urls.clone(),
        LISTENER_TOKEN,
        concurrency,
        sealing.clone(),
    )
    .await
    .context("the simulated listener could not open the stream")?;
    // The window starts once everything is up.
    let window = Window::starting_now(plan.warmup, plan.duration);
    let submitters = Arc::new(load::Connections::new(concurrency));
    let targets = Arc::new(urls);
    let load = load::drive(concurrency, window, move |index, sequence| {
        let submitters = submitters.clone();
        let targets = targets.clone();
        let sealing = sealing.clone();
        async move {
            let url = &targets[index % targets.len()];
            let payload = json!({ "n": sequence, "submitter": index });
            match &sealing {
                Some(sealing) => {
                    let to = (url.as_str(), SUBMITTER_TOKEN);
                    load::submit_sealed_and_wait(
                        &submitters,
                        index,
                        to,
                        sealing,
                        payload,
                        WAIT_SECS,
                    )
                    .await
                }
                None => {
                    load::submit_and_wait(
                        &submitters,
                        index,
                        url,
                        SUBMITTER_TOKEN,
                        payload,
                        WAIT_SECS,
                    )
                    .await
                }
            }
        }
    });
    let (mut outcome, cpu) = tokio::join!(load, cpu_probe(window, cluster.pids(), scratch));
    let rss = cluster
        .pids()
        .into_iter()
        .filter_map(|pid| procfs::rss_kib(pid).map(|(_, peak)| peak))
        .max()
        .map(mib);
    let batches = batches::scrape(&cluster.urls()).await;
    let answer_errors = listener.counts.errors.load(Ordering::Relaxed);
    listener.expect_end();
    cluster.stop().await?;
    if let Err(error) = listener.stop().await {
        outcome.errors += 1;
        outcome
            .first_error
            .get_or_insert(format!("listener: {error:#}"));
    }
    if answer_errors > 0 {
        outcome.errors += answer_errors;
        outcome
            .first_error
            .get_or_insert(format!("listener: {answer_errors} answers failed"));
    }
    Ok((outcome, cpu.unwrap_or_default(), rss, batches))
}

/// CPU time of the brokers, the scratch database's backends, the bench itself
/// and everything else, between the start and the end of the window.
async fn cpu_probe(
    window: Window,
    broker_pids: Vec<u32>,
    scratch: &Scratch,
) -> anyhow::Result<CpuUse> {
    let backend_pids = || async {
        Ok::<_, anyhow::Error>(
            scratch
                .backends()
                .await?
                .into_iter()
                .map(|(pid, _, _)| pid)
                .collect::<Vec<_>>(),
        )
    };
    tokio::time::sleep_until(window.from).await;
    let mut backends = backend_pids().await?;
    let start = CpuSnapshot::take(broker_pids.iter().chain(&backends).copied());
    tokio::time::sleep_until(window.until).await;
    for pid in backend_pids().await? {
        if !backends.contains(&pid) {
            backends.push(pid);
        }
    }
    let end = CpuSnapshot::take(broker_pids.iter().chain(&backends).copied());
    let ticks = procfs::ticks_per_second() * window.seconds();
    let pct = |used: u64| used as f64 / ticks * 100.0;
    let broker = end.used_since(&start, &broker_pids);
    let postgres = end.used_since(&start, &backends);
    let bench = end.own.saturating_sub(start.own);
    let machine = match (start.machine, end.machine) {
        (Some((busy0, _)), Some((busy1, _))) => busy1.saturating_sub(busy0),
        _ => 0,
    };
    Ok(CpuUse {
        broker_pct: pct(broker),
        postgres_pct: pct(postgres),
        bench_pct: pct(bench),
        other_pct: pct(machine.saturating_sub(broker + postgres + bench)),
        ..CpuUse::default()
    })
}
