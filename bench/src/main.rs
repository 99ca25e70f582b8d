//! `backchannel-bench` (also run as `backchannel bench`): the load test behind
//! `make bench`. A crate of its own, so that its dependencies (charts,
//! histograms) stay out of the production binary.
//!
//! It creates a scratch database on the server of `DATABASE_URL`, starts broker
//! instances as child processes (`backchannel serve`), a simulated listener and
//! N concurrent submitters over HTTP, and measures each scenario: round trips
//! per second, latency percentiles, database transactions per round trip and
//! peak connections; then the same hand-off in plain SQL (the floor), and the
//! idle cost of requests that wait. Progress goes to stderr; the report to
//! stdout and `target/bench/` (report.md, report.json, latency.svg).

mod batches;
mod brokers;
mod chart;
mod floor;
mod holder;
mod idle;
mod listener;
mod load;
mod pg;
mod plan;
mod procfs;
mod report;
mod scenario;
mod sealing;
mod stats;
mod targets;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::{Args, Parser, ValueEnum};

use self::brokers::BrokerSpec;
use self::plan::Scenario;
use self::report::{Meta, Report};
use self::targets::thousands;
use backchannel::config::WakeMode;

/// Groups of scenarios, to run only some of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Group {
    /// LISTEN/NOTIFY brokers, 1 instance.
    Notify,
    /// Sleep-polling brokers (the seed design), 1 instance (and its idle cost).
    Poll,
    /// LISTEN/NOTIFY brokers, several instances.
    Cluster,
    /// The same hand-off in plain SQL, without HTTP.
    Floor,
    /// LISTEN/NOTIFY, 1 instance, payloads and answers sealed end to end
    /// (the submitters seal and open, the listener opens and seals).
    Sealed,
    /// Requests waiting with no listener: transactions/s, connections, memory.
    Idle,
}

impl Group {
    pub const ALL: [Group; 6] = [
        Group::Notify,
        Group::Poll,
        Group::Cluster,
        Group::Floor,
        Group::Idle,
        Group::Sealed,
    ];
}

/// Load-test backchannel brokers on a scratch database and report (`make bench`).
#[derive(Debug, Parser)]
#[command(name = "backchannel-bench", version, about)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// `backchannel-bench hold ...`: a child process of a bench run that holds
/// waiting requests for the idle scenarios (not for use by hand).
#[derive(Debug, Parser)]
#[command(name = "backchannel-bench hold")]
struct HoldCli {
    #[command(flatten)]
    args: holder::HoldArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    backchannel::telemetry::init();
    if std::env::args_os().nth(1).is_some_and(|a| a == "hold") {
        let args = HoldCli::parse_from(std::env::args_os().skip(1)).args;
        return holder::hold(args).await;
    }
    run(Cli::parse().args).await
}

/// Load-test the broker; see `make bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// PostgreSQL server to test on: a scratch database is created there and
    /// dropped afterwards (the URL's own database is only used to connect).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// A short smoke run (under a minute): fewer scenarios, shorter windows.
    #[arg(long)]
    pub quick: bool,

    /// Concurrent submitters per scenario [default: 1,16,64,256; quick: 1,16].
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Option<Vec<usize>>,

    /// Instances of the multi-instance scenarios.
    #[arg(long, default_value_t = 3)]
    pub cluster_size: usize,

    /// Only these scenario groups [default: all].
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Option<Vec<Group>>,

    /// Poll interval of the poll scenarios, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_interval_ms: u64,

    /// Database pool size per instance (also the floor's query connections).
    #[arg(long, default_value_t = 16)]
    pub pool_size: usize,

    /// Seconds of warm-up per scenario [default: 2; quick: 0.5].
    #[arg(long)]
    pub warmup: Option<f64>,

    /// Seconds measured per scenario [default: 6; quick: 2].
    #[arg(long)]
    pub duration: Option<f64>,

    /// Waiting requests of the idle-cost scenarios [default: 1000,10000,50000; quick: 1000].
    #[arg(long, value_delimiter = ',')]
    pub idle_waiting: Option<Vec<usize>>,

    /// Seconds of the idle-cost window [default: 10; quick: 3].
    #[arg(long)]
    pub idle_window: Option<f64>,

    /// Requests per second while the idle scenarios open their waiting requests.
    #[arg(long, default_value_t = 2500)]
    pub idle_ramp: usize,

    /// Seconds every backend must have been idle before the idle window opens
    /// (PostgreSQL 15 reports an idle backend's counters up to 10 s late).
    #[arg(long, default_value_t = 11.0)]
    pub stats_settle: f64,

    /// Where report.md, report.json and latency.svg go.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,

    /// Diagnostics: log every statement run in the scratch database to the
    /// server log (`log_statement = all` for that database only).
    #[arg(long)]
    pub log_statements: bool,

    /// Diagnostics: a server setting for the scratch database's sessions, as
    /// name=value (repeatable), e.g. enable_bitmapscan=off, to measure what a
    /// setting would change without touching the broker.
    #[arg(long = "db-setting", value_name = "NAME=VALUE")]
    pub db_settings: Vec<String>,

    /// Send the brokers' query pool (DATABASE_URL) through this pooler, e.g.
    /// postgres://postgres@127.0.0.1:6432/postgres: a PgBouncer whose
    /// [databases] forwards every name to the server (`* = host=... port=...`)
    /// and closes idle server connections within a second or two
    /// (`server_idle_timeout = 1`, so that the scratch database quiesces between
    /// scenarios). The scratch database's name replaces the URL's; the
    /// dedicated sessions keep the server's URL (BACKCHANNEL_DIRECT_DATABASE_URL).
    /// Set BACKCHANNEL_STATEMENTS=unnamed in the environment for a pooler
    /// without prepared statement support.
    #[arg(long, value_name = "URL")]
    pub pooler: Option<String>,

    /// The broker binary to start [default: `backchannel` next to this program].
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
}

/// Requests timed for the cost of each sealing step alone.
const SEAL_COST_REQUESTS: usize = 2_000;

/// KiB to MiB.
pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Run the plan, write the report, print it. The scratch database is dropped
/// and the brokers stopped on every way out (error, ctrl-c, SIGTERM, panic).
async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let load_average_start = procfs::load_average();
    procfs::raise_open_files();
    let binary = match &args.broker_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find this program")?
            .with_file_name("backchannel"),
    };
    let scratch = pg::Scratch::create(&args.database_url).await?;
    eprintln!("bench: scratch database {}", scratch.name);
    if args.log_statements {
        scratch.set("log_statement", "all").await?;
    }
    for setting in &args.db_settings {
        let (name, value) = setting
            .split_once('=')
            .with_context(|| format!("--db-setting {setting}: expected NAME=VALUE"))?;
        scratch.set(name.trim(), value.trim()).await?;
        eprintln!(
            "bench: scratch database sessions get {} = {}",
            name.trim(),
            value.trim()
        );
    }
    let pooled_url = match &args.pooler {
        Some(url) => {
            let url = pg::with_database(url, &scratch.name)?;
            eprintln!("bench: brokers' query pool through the pooler of --pooler");
            Some(url)
        }
        None => None,
    };
    let broker = BrokerSpec {
        binary,
        pooled_url,
        database_url: scratch.url.clone(),
        wake: WakeMode::Notify,
        poll_interval_ms: args.poll_interval_ms,
        pool_size: args.pool_size,
        forwarding: true,
    };
    let plan = plan::plan(&args, broker);
    // Dropping the plan's future (ctrl-c) kills the brokers it started.
    let outcome = tokio::select! {
        outcome = run_plan(&plan, &scratch) => outcome,
        _ = interrupted() => Err(anyhow!("interrupted")),
    };
    let postgres = scratch.server_version().await.unwrap_or_default();
    let dropped = scratch.drop_database().await;
    let (round_trips, idle) = outcome?;
    dropped?;
    let seal_cost = if round_trips.iter().any(|r| r.wake == "sealed") {
        Some(sealing::SealCost::measure(SEAL_COST_REQUESTS)?)
    } else {
        None
    };

    let report = Report {
        meta: Meta {
            version: env!("CARGO_PKG_VERSION").into(),
            started_at,
            quick: plan.quick,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            postgres,
            load_average_start,
            load_average_end: procfs::load_average(),
            warmup_secs: plan.warmup.as_secs_f64(),
            measure_secs: plan.duration.as_secs_f64(),
            idle_window_secs: plan.idle_window.as_secs_f64(),
            poll_interval_ms: args.poll_interval_ms,
            pool_size: args.pool_size,
            total_secs: started.elapsed().as_secs_f64(),
        },
        p50_ratio_poll_notify: targets::p50_ratio(&round_trips),
        targets: targets::evaluate(&round_trips, &idle, args.cluster_size),
        round_trips,
        idle,
        seal_cost,
    };
    report.write(&args.out_dir)?;
    print!("{}", report.markdown());
    eprintln!(
        "bench: done in {:.0} s; report in {}",
        started.elapsed().as_secs_f64(),
        args.out_dir.display()
    );
    Ok(())
}

async fn interrupted() {
    backchannel::app::shutdown_signal().await
}

async fn run_plan(
    plan: &plan::Plan,
    scratch: &pg::Scratch,
) -> anyhow::Result<(Vec<scenario::RoundTrips>, Vec<idle::Idle>)> {
    let target = backchannel::store::Target::new(&scratch.url, "DATABASE_URL")?;
    backchannel::app::migrate(&target).await?;
    let mut round_trips = Vec::new();
    let mut idles = Vec::new();
    let total = plan.scenarios.len();
    for (n, scenario) in plan.scenarios.iter().enumerate() {
        let label = scenario.label();
        eprintln!("bench: [{}/{total}] {label} ...", n + 1);
        let began = Instant::now();
        match scenario {
            Scenario::Idle { wake, waiting } => {
                let i = idle::run(plan, scratch, *wake, *waiting)
                    .await
                    .with_context(|| format!("scenario \"{label}\""))?;
                eprintln!(
                    "bench:       {:.2} tx/s, {} connections, RSS {:.1} MiB, {} errors ({:.1} s)",
                    i.transactions_per_sec,
                    i.peak_connections,
                    i.rss_mib,
                    i.errors,
                    began.elapsed().as_secs_f64()
                );
                idles.push(i);
            }
            _ => {
                let r = scenario::run(plan, scratch, scenario)
                    .await
                    .with_context(|| format!("scenario \"{label}\""))?;
                eprintln!(
                    "bench:       {} rt/s, p50 {:.2} ms, p99 {:.2} ms, {:.2} tx/rt, {} connections, {} errors ({:.1} s)",
                    thousands(r.round_trips_per_sec),
                    r.latency.p50_ms,
                    r.latency.p99_ms,
                    r.transactions_per_round_trip,
                    r.peak_connections,
                    r.errors,
                    began.elapsed().as_secs_f64()
                );
                round_trips.push(r);
            }
        }
    }
    Ok((round_trips, idles))
}
