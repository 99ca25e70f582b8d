//! `backchannel submit` and `backchannel status`: the HTTP API from a shell.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Submit one job and print it as JSON; exit 0 only when it is `done`.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// The broker's base URL.
    #[arg(long, env = "BACKCHANNEL_SERVER")]
    pub server: String,
    /// A submitter token.
    #[arg(long, env = "BACKCHANNEL_TOKEN", hide_env_values = true)]
    pub token: String,
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
    /// The broker's base URL.
    #[arg(long, env = "BACKCHANNEL_SERVER")]
    pub server: String,
    /// A submitter token.
    #[arg(long, env = "BACKCHANNEL_TOKEN", hide_env_values = true)]
    pub token: String,
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

fn url(server: &str, path: &str) -> String {
    format!("{}{}", server.trim_end_matches('/'), path)
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
        .post(url(&args.server, "/v1/jobs"))
        .query(&[("wait", args.wait)])
        .bearer_auth(&args.token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.server))?;
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

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(url(&args.server, path))
            .bearer_auth(&args.token)
            .send()
    };
    let listener = get("/v1/listener")
        .await
        .with_context(|| format!("cannot reach {}", args.server))?;
    if !listener.status().is_success() {
        return Err(error_of(listener).await);
    }
    let listener: Value = listener.json().await?;
    let stats = get("/v1/stats").await?;
    if !stats.status().is_success() {
        return Err(error_of(stats).await);
    }
    let stats: Value = stats.json().await?;
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
    Ok(())
}
