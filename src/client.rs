//! `backchannel submit` and `backchannel status`: the HTTP API from a shell.
//! `status --check` is a monitoring plugin (see [`check`]).

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

/// Where the broker is and the submitter token to use.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// The broker's base URL.
    #[arg(long, env = "BACKCHANNEL_SERVER")]
    pub server: String,
    /// A submitter token.
    #[arg(long, env = "BACKCHANNEL_SUBMITTER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The deprecated name of BACKCHANNEL_SUBMITTER_TOKEN, used when it is not set.
    #[arg(
        long = "deprecated-token",
        env = "BACKCHANNEL_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub deprecated_token: Option<String>,
}

impl BrokerArgs {
    pub fn new(server: &str, token: &str) -> BrokerArgs {
        BrokerArgs {
            server: server.to_owned(),
            token: Some(token.to_owned()),
            deprecated_token: None,
        }
    }

    fn token(&self) -> anyhow::Result<&str> {
        self.token
            .as_deref()
            .or(self.deprecated_token.as_deref())
            .context("a submitter token is required: --token or BACKCHANNEL_SUBMITTER_TOKEN")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.trim_end_matches('/'), path)
    }
}

/// Submit one job and print it as JSON; exit 0 only when it is `done`.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The job's kind (1 to 200 characters of A-Z a-z 0-9 . _ : -).
    pub kind: String,
    /// The payload as JSON, or `-` to read it from standard input (default null).
    pub payload: Option<String>,
    /// Seconds until the job's deadline (server default when absent).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Seconds to wait for the answer (0: return at once).
    #[arg(long, default_value_t = 30.0)]
    pub wait: f64,
    /// Idempotency key: a repeated submit with the same key creates nothing.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

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

fn payload(arg: Option<&str>) -> anyhow::Result<Value> {
    let text = match arg {
        None => return Ok(Value::Null),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the payload from stdin")?;
            text
        }
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text).context("the payload is not valid JSON")
}

async fn error_of(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    let code = body["error"]["code"].as_str().unwrap_or("unknown");
    anyhow::anyhow!("the broker answered {status}: {code}: {message}")
}

/// Returns the job's final state; the caller maps it to the exit code.
pub async fn submit(args: SubmitArgs) -> anyhow::Result<Value> {
    let mut body =
        serde_json::json!({"kind": args.kind, "payload": payload(args.payload.as_deref())?});
    if let Some(timeout) = args.timeout {
        body["timeout"] = timeout.into();
    }
    if let Some(key) = args.idempotency_key {
        body["idempotency_key"] = key.into();
    }
    let client = reqwest::Client::new();
    let response = client
        .post(args.broker.url("/v1/jobs"))
        .query(&[("wait", args.wait)])
        .bearer_auth(args.broker.token()?)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.broker.server))?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    let job: Value = response
        .json()
        .await
        .context("the broker's answer is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&job)?);
    Ok(job)
}

/// Exit with 0 for a `done` job, otherwise explain.
pub fn check_done(job: &Value) -> anyhow::Result<()> {
    match job["state"].as_str() {
        Some("done") => Ok(()),
        Some(state @ ("pending" | "delivered")) => {
            bail!(
                "job {} is still {state}: no answer within the wait",
                job["id"]
            )
        }
        Some(state) => bail!("job {} ended {state}", job["id"]),
        None => bail!("the broker's answer has no state"),
    }
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

/// Read `/v1/listener` and `/v1/stats`.
pub async fn report(args: &BrokerArgs, timeout: Duration) -> Result<Report, Unreachable> {
    let token = args
        .token()
        .map_err(|e| Unreachable::Usage(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| Unreachable::Usage(format!("cannot build the HTTP client: {e}")))?;
    let get = |path: &'static str| {
        let request = client.get(args.url(path)).bearer_auth(token);
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

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `backchannel status`: print, and return the exit code.
pub async fn status(args: StatusArgs) -> i32 {
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

/// The monitoring-plugin verdict (Nagios, Icinga, Sensu, ...): one line
/// `BACKCHANNEL <STATE> - <summary> | <perfdata>` and the exit code.
pub mod check {
    use serde_json::{Value, json};

    use super::Report;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        Ok = 0,
        Warning = 1,
        Critical = 2,
        Unknown = 3,
    }

    impl Level {
        pub fn name(self) -> &'static str {
            match self {
                Level::Ok => "OK",
                Level::Warning => "WARNING",
                Level::Critical => "CRITICAL",
                Level::Unknown => "UNKNOWN",
            }
        }
    }

    #[derive(Debug, Clone)]
    pub struct Verdict {
        pub level: Level,
        pub summary: String,
        pub perfdata: String,
        pub report: Option<Value>,
    }

    impl Verdict {
        pub fn unknown(summary: String) -> Verdict {
            Verdict {
                level: Level::Unknown,
                summary,
                perfdata: String::new(),
                report: None,
            }
        }

        /// `BACKCHANNEL OK - listener ... | listener_connected=1;;1:;0;1 ...`
        pub fn line(&self) -> String {
            // `|` starts the perfdata: none may appear in the summary.
            let summary = self.summary.replace('|', "/").replace('\n', " ");
            let mut line = format!("BACKCHANNEL {} - {summary}", self.level.name());
            if !self.perfdata.is_empty() {
                line.push_str(" | ");
                line.push_str(&self.perfdata);
            }
            line
        }

        pub fn json(&self) -> Value {
            let mut value = json!({
                "status": self.level.name().to_ascii_lowercase(),
                "exit_code": self.level as i32,
                "summary": self.summary,
            });
            if let Some(Value::Object(report)) = &self.report {
                for (key, item) in report {
                    value[key] = item.clone();
                }
            }
            value
        }
    }

    /// CRITICAL without a listener or with the oldest pending job at least
    /// `crit` seconds old, WARNING from `warn` seconds, else OK.
    pub fn judge(report: &Report, warn: f64, crit: f64) -> Verdict {
        if !(warn.is_finite() && crit.is_finite() && warn >= 0.0 && warn <= crit) {
            return Verdict::unknown(
                "--warn-pending-age must be 0 or more and not above --crit-pending-age".into(),
            );
        }
        let (listener, stats) = (&report.listener, &report.stats);
        let held = listener["held"] == true;
        let count = |state: &str| stats["jobs"][state].as_i64().unwrap_or(0);
        let (pending, delivered) = (count("pending"), count("delivered"));
        let age = stats["oldest_pending_age_seconds"].as_f64();
        let age_text = match age {
            Some(age) => format!("oldest pending job {age:.1} s old"),
            None => "no pending job".to_string(),
        };
        let jobs = format!("{pending} pending, {delivered} delivered, {age_text}");
        let (level, summary) = if !held {
            (
                Level::Critical,
                format!("no listener holds the stream; {jobs}"),
            )
        } else {
            let who = format!(
                "listener {} connected on {}",
                listener["listener_id"].as_str().unwrap_or("(no id)"),
                listener["instance"]
                    .as_str()
                    .unwrap_or("(unknown instance)")
            );
            match age {
                Some(age) if age >= crit => (
                    Level::Critical,
                    format!("{age_text} (critical from {crit} s); {who}"),
                ),
                Some(age) if age >= warn => (
                    Level::Warning,
                    format!("{age_text} (warning from {warn} s); {who}"),
                ),
                _ => (Level::Ok, format!("{who}; {jobs}")),
            }
        };
        let perfdata = format!(
            "listener_connected={};;1:;0;1 pending={pending};;;0 delivered={delivered};;;0 oldest_pending_age={:.3}s;{warn};{crit};0;",
            i32::from(held),
            age.unwrap_or(0.0)
        );
        Verdict {
            level,
            summary,
            perfdata,
            report: Some(json!({"listener": listener, "stats": stats})),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn report(held: bool, age: Option<f64>) -> Report {
            Report {
                listener: json!({"held": held, "listener_id": "castellum|1", "instance": "a"}),
                stats: json!({"jobs": {"pending": 2, "delivered": 1}, "oldest_pending_age_seconds": age}),
            }
        }

        #[test]
        fn levels_follow_the_listener_and_the_thresholds() {
            assert_eq!(judge(&report(true, None), 30.0, 120.0).level, Level::Ok);
            assert_eq!(
                judge(&report(true, Some(29.0)), 30.0, 120.0).level,
                Level::Ok
            );
            assert_eq!(
                judge(&report(true, Some(30.0)), 30.0, 120.0).level,
                Level::Warning
            );
            assert_eq!(
                judge(&report(true, Some(500.0)), 30.0, 120.0).level,
                Level::Critical
            );
            assert_eq!(
                judge(&report(false, None), 30.0, 120.0).level,
                Level::Critical
            );
            assert_eq!(
                judge(&report(true, None), 130.0, 120.0).level,
                Level::Unknown
            );
        }

        #[test]
        fn one_line_with_perfdata_and_no_stray_bar() {
            let line = judge(&report(true, Some(3.0)), 30.0, 120.0).line();
            assert!(
                line.starts_with("BACKCHANNEL OK - listener castellum/1 connected on a;"),
                "{line}"
            );
            assert_eq!(line.matches('|').count(), 1, "{line}");
            assert!(
                line.ends_with("oldest_pending_age=3.000s;30;120;0;"),
                "{line}"
            );
            assert!(line.contains("listener_connected=1;;1:;0;1 pending=2;;;0 delivered=1;;;0"));
        }
    }
}
