//! `backchannel submit`: one job from a shell, printed as JSON; sealed
//! (docs/sealed.md) with `--seal-to PUB --sign-with KEY`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::api::{BrokerArgs, error_of};
use crate::seal::{AnswerError, AnswerKey, Outcome, Sealer, unix_now};

/// The job's timeout of a sealed submit that names none: the broker's
/// default (BACKCHANNEL_DEFAULT_TIMEOUT), sent explicitly, since the sealed
/// header's `exp` is `iat` + the timeout.
const SEALED_DEFAULT_TIMEOUT: f64 = 30.0;

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
    #[arg(long, conflicts_with = "seal_to")]
    pub idempotency_key: Option<String>,
    /// Seal the payload to castellum's X25519 public key (PEM) and open the
    /// answer (the job is printed opened); needs --sign-with. The sealed
    /// request's ref is sent as the idempotency key, and the timeout defaults
    /// to 30 seconds.
    #[arg(long, env = "BACKCHANNEL_SEAL_TO", requires = "sign_with")]
    pub seal_to: Option<PathBuf>,
    /// The scheduler's Ed25519 private key (PEM) that signs a sealed request.
    #[arg(long, env = "BACKCHANNEL_SIGN_WITH", requires = "seal_to")]
    pub sign_with: Option<PathBuf>,
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
    let payload = payload(args.payload.as_deref())?;
    let sealer = match (&args.seal_to, &args.sign_with) {
        (Some(seal_to), Some(sign_with)) => {
            Some(Sealer::from_files(sign_with, seal_to)?.with_channel(&args.broker.channel))
        }
        _ => None,
    };
    let mut body = serde_json::json!({"kind": args.kind, "payload": payload});
    if let Some(timeout) = args.timeout {
        body["timeout"] = timeout.into();
    }
    if let Some(key) = &args.idempotency_key {
        body["idempotency_key"] = key.as_str().into();
    }
    let answer_key = match &sealer {
        Some(sealer) => Some(seal(sealer, &mut body, args.timeout)?),
        None => None,
    };
    let client = reqwest::Client::new();
    let response = client
        .post(args.broker.channel_url("jobs")?)
        .query(&[("wait", args.wait)])
        .bearer_auth(args.broker.token()?)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.broker.server))?;
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    let mut job: Value = response
        .json()
        .await
        .context("the broker's answer is not JSON")?;
    if let Some(answer_key) = answer_key {
        job["payload"] = payload;
        if let Err(error) = open(&answer_key, &mut job) {
            if let AnswerError::Refused(refusal) = &error {
                println!("{}", serde_json::to_string_pretty(&job)?);
                bail!(
                    "job {} ended failed: castellum refused it: {refusal}",
                    job["id"]
                );
            }
            bail!("job {}: {error}", job["id"]);
        }
    }
    println!("{}", serde_json::to_string_pretty(&job)?);
    Ok(job)
}

/// Seal `body`'s payload in place (the ref becomes the idempotency key, the
/// timeout is sent); the key that opens the answer.
fn seal(sealer: &Sealer, body: &mut Value, timeout: Option<f64>) -> anyhow::Result<AnswerKey> {
    let seconds = timeout.unwrap_or(SEALED_DEFAULT_TIMEOUT);
    let timeout = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|t| !t.is_zero())
        .context("--timeout must be a number of seconds greater than 0")?;
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    let sealed = sealer.seal(&kind, &body["payload"], timeout, unix_now())?;
    body["payload"] = sealed.envelope;
    body["timeout"] = seconds.into();
    body["idempotency_key"] = sealed.reference.into();
    Ok(sealed.answer_key)
}

/// Replace an ended job's sealed answer with the opened one. A job still
/// open is left as it is (its answer can only be opened while this command
/// holds the key: wait long enough).
fn open(answer_key: &AnswerKey, job: &mut Value) -> Result<(), AnswerError> {
    let (outcome, field) = match job["state"].as_str() {
        Some("done") => (Outcome::Done, "result"),
        Some("failed") => (Outcome::Failed, "error"),
        _ => return Ok(()),
    };
    let id = job["id"].as_i64().unwrap_or_default();
    job[field] = answer_key.open(id, outcome, &job[field])?;
    Ok(())
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
