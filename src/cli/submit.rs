//! `backchannel submit`: one job from a shell, printed as JSON.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::api::{BrokerArgs, error_of};

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

/// Returns the job's final state; the caller maps it to the exit code.
pub async fn run(args: SubmitArgs) -> anyhow::Result<Value> {
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

/// The hint for a job no listener ever took (the broker's `attempts` is 0).
pub const NO_LISTENER_HINT: &str = "no listener took the job (attempts 0): is the agent running?";

/// Exit with 0 for a `done` job, otherwise explain.
pub fn check_done(job: &Value) -> anyhow::Result<()> {
    let untaken = job["attempts"].as_i64() == Some(0);
    match job["state"].as_str() {
        Some("done") => Ok(()),
        Some("pending") if untaken => {
            bail!(
                "job {} is still pending: no answer within the wait; {NO_LISTENER_HINT}",
                job["id"]
            )
        }
        Some(state @ ("pending" | "delivered")) => {
            bail!(
                "job {} is still {state}: no answer within the wait",
                job["id"]
            )
        }
        Some("expired") if untaken => bail!("job {} ended expired: {NO_LISTENER_HINT}", job["id"]),
        Some(state) => bail!("job {} ended {state}", job["id"]),
        None => bail!("the broker's answer has no state"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_job_no_listener_took_says_so() {
        let expired = json!({"id": 7, "state": "expired", "attempts": 0});
        let said = super::check_done(&expired).unwrap_err().to_string();
        assert_eq!(
            said,
            "job 7 ended expired: no listener took the job (attempts 0): is the agent running?"
        );
        let taken = json!({"id": 7, "state": "expired", "attempts": 1});
        let said = super::check_done(&taken).unwrap_err().to_string();
        assert_eq!(said, "job 7 ended expired");
        let pending = json!({"id": 8, "state": "pending", "attempts": 0});
        let said = super::check_done(&pending).unwrap_err().to_string();
        assert!(said.ends_with(super::NO_LISTENER_HINT), "{said}");
    }
}
