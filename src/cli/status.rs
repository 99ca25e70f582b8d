//! `backchannel status`: who holds the stream and how many jobs are where;
//! with `--check`, a monitoring plugin ([`check`]).

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::api::{BrokerArgs, describe, error_of};
use super::check;

/// Print who holds the stream and how many jobs are where.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Check like a monitoring plugin: one status line with perfdata, exit 0
    /// OK, 1 WARNING, 2 CRITICAL (no listener, or the oldest pending job past
    /// --crit-pending-age), 3 UNKNOWN (broker unreachable, token refused).
    #[arg(long)]
    pub check: bool,
    /// Print JSON for scripts (with --check: the verdict as well).
    #[arg(long)]
    pub json: bool,
    /// Seconds: an oldest pending job at least this old is a WARNING.
    #[arg(long, default_value_t = 30.0)]
    pub warn_pending_age: f64,
    /// Seconds: an oldest pending job at least this old is CRITICAL.
    #[arg(long, default_value_t = 120.0)]
    pub crit_pending_age: f64,
    /// Seconds each request to the broker may take.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

/// What the broker says: the stream holder and the job counts.
pub struct Report {
    pub listener: Value,
    pub stats: Value,
}

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {server}: {reason}")]
    Network { server: String, reason: String },
    #[error("the broker refused the token ({0})")]
    Refused(String),
    #[error("{0}")]
    Answer(String),
}

/// Read `/v1/listener` and `/v1/stats` (of `--channel`:
/// `/v1/channels/NAME/...`).
pub async fn report(args: &BrokerArgs, timeout: Duration) -> Result<Report, Unreachable> {
    let token = args
        .token()
        .map_err(|e| Unreachable::Usage(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Unreachable::Usage(format!("cannot build the HTTP client: {e}")))?;
    let url = |rest: &str| {
        args.channel_url(rest)
            .map_err(|e| Unreachable::Usage(e.to_string()))
    };
    let urls = (url("listener")?, url("stats")?);
    let get = |path: &'static str| {
        let target = if path.ends_with("listener") {
            &urls.0
        } else {
            &urls.1
        };
        let request = client.get(target).bearer_auth(&token);
        async move {
            let network = |e: reqwest::Error| Unreachable::Network {
                server: args.server.clone(),
                reason: describe(&e),
            };
            let response = request.send().await.map_err(network)?;
            let status = response.status();
            if status.is_success() {
                return response
                    .json::<Value>()
                    .await
                    .map_err(|_| Unreachable::Answer(format!("{path}: the answer is not JSON")));
            }
            let error = error_of(response).await.to_string();
            if status == 401 || status == 403 {
                Err(Unreachable::Refused(error))
            } else {
                Err(Unreachable::Answer(format!("{path}: {error}")))
            }
        }
    };
    let listener = get("/v1/listener").await?;
    let stats = get("/v1/stats").await?;
    Ok(Report { listener, stats })
}

/// `backchannel status`: print, and return the exit code.
pub async fn run(args: StatusArgs) -> i32 {
    let timeout = if args.timeout.is_finite() && args.timeout > 0.0 {
        Duration::from_secs_f64(args.timeout)
    } else {
        Duration::from_secs(10)
    };
    let report = report(&args.broker, timeout).await;
    if args.check {
        let verdict = match report {
            Ok(report) => check::judge(&report, args.warn_pending_age, args.crit_pending_age),
            Err(error) => check::Verdict::unknown(error.to_string()),
        };
        if args.json {
            println!("{}", verdict.json());
        } else {
            println!("{}", verdict.line());
        }
        return verdict.level as i32;
    }
    match report {
        Ok(report) if args.json => {
            let both = json!({"listener": report.listener, "stats": report.stats});
            println!("{both}");
            0
        }
        Ok(report) => {
            print_report(&report);
            0
        }
        Err(error) => {
            eprintln!("Error: {error}");
            1
        }
    }
}

fn print_report(report: &Report) {
    let (listener, stats) = (&report.listener, &report.stats);
    if listener["held"] == true {
        println!(
            "listener: connected (id {}, on instance {}, since {})",
            listener["listener_id"].as_str().unwrap_or("-"),
            listener["instance"].as_str().unwrap_or("-"),
            listener["since"].as_str().unwrap_or("-"),
        );
    } else {
        println!("listener: NOT connected");
    }
    let jobs = &stats["jobs"];
    println!(
        "jobs: {} pending, {} delivered, {} done, {} failed, {} expired, {} cancelled",
        jobs["pending"],
        jobs["delivered"],
        jobs["done"],
        jobs["failed"],
        jobs["expired"],
        jobs["cancelled"]
    );
    match stats["oldest_pending_age_seconds"].as_f64() {
        Some(age) => println!("oldest pending job: {age:.1} s old"),
        None => println!("oldest pending job: none"),
    }
}
