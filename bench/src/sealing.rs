//! Sealed jobs in the bench (docs/sealed.md): the submitters seal each
//! payload and open each answer as a scheduler does, the simulated listener
//! checks, opens and seals the answer as castellum's agent does, all with
//! `backchannel::seal`; and the cost of each of the four steps alone.
//!
//! The broker's seal gate stays off: these rows measure sealing end to end
//! against the same broker work.

use std::time::{Duration, Instant};

use backchannel::seal::{
    AnswerKey, Delivery, Incoming, Keyring, Opener, Outcome, RecipientKey, Sealer, SigningKey,
    unix_now,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The kind of every bench job.
pub const KIND: &str = "bench.echo";
/// Replay-cache entries: more than a scenario's round trips (each entry
/// lives until its request's `exp` plus a minute, longer than a scenario).
const REPLAY_CAPACITY: usize = 2_000_000;

/// Both ends' keys for one scenario: the scheduler's sealer, castellum's opener.
pub struct Sealing {
    sealer: Sealer,
    opener: Opener,
}

impl Sealing {
    /// Fresh keys and an empty replay cache.
    pub fn new() -> anyhow::Result<Sealing> {
        let recipient = RecipientKey::generate()?;
        let signing = SigningKey::generate()?;
        let signer = signing.public().clone();
        let sealer = Sealer::new(signing, recipient.public().clone());
        let opener = Opener::new(Keyring::new(vec![recipient], vec![signer]))
            .with_replay_capacity(REPLAY_CAPACITY);
        Ok(Sealing { sealer, opener })
    }

    /// The submit body of a sealed job (its ref as the idempotency key), and
    /// the key to its answer.
    pub fn submit_body(
        &self,
        payload: &Value,
        timeout: f64,
    ) -> Result<(String, AnswerKey), String> {
        let sealed = self
            .sealer
            .seal(KIND, payload, Duration::from_secs_f64(timeout), unix_now())
            .map_err(|e| format!("seal: {e}"))?;
        let body = json!({
            "kind": KIND,
            "payload": sealed.envelope,
            "timeout": timeout,
            "idempotency_key": sealed.reference,
        });
        Ok((body.to_string(), sealed.answer_key))
    }

    /// The listener's answer body to a streamed job: opened, echoed, sealed.
    pub fn answer_body(&self, id: i64, kind: &str, payload: &RawValue) -> Result<String, String> {
        let delivery = Delivery {
            id,
            kind,
            payload: payload.get(),
        };
        let opened = match self.opener.open(delivery, unix_now()) {
            Ok(Incoming::Sealed(opened)) => opened,
            Ok(Incoming::Plain) => return Err("a plain payload in a sealed scenario".into()),
            Err(refusal) => return Err(format!("refused: {refusal}")),
        };
        let plain: Value =
            serde_json::from_str(opened.payload.get()).map_err(|e| format!("opened: {e}"))?;
        let sealed = opened
            .responder
            .seal(Outcome::Done, &plain)
            .map_err(|e| format!("seal the answer: {e}"))?;
        Ok(json!({ "result": sealed }).to_string())
    }
}

/// Microseconds per step, means over `n` requests of a bench-sized payload,
/// on one core, no database, no network.
#[derive(Debug, Clone, Serialize)]
pub struct SealCost {
    pub requests: usize,
    pub seal_request_us: f64,
    pub open_request_us: f64,
    pub seal_answer_us: f64,
    pub open_answer_us: f64,
}

impl SealCost {
    pub fn measure(n: usize) -> anyhow::Result<SealCost> {
        let sealing = Sealing::new()?;
        let payload = json!({"n": 1, "submitter": 0});
        let now = unix_now();
        let n = n.max(1);
        let mut spent = [Duration::ZERO; 4];
        for job in 0..n {
            let job = job as i64;
            let start = Instant::now();
            let request = sealing
                .sealer
                .seal(KIND, &payload, Duration::from_secs(30), now)?;
            spent[0] += start.elapsed();
            let text = request.envelope.to_string();
            let start = Instant::now();
            let delivery = Delivery {
                id: job,
                kind: KIND,
                payload: &text,
            };
            let Ok(Incoming::Sealed(opened)) = sealing.opener.open(delivery, now) else {
                anyhow::bail!("the bench's own sealed request did not open");
            };
            spent[1] += start.elapsed();
            let start = Instant::now();
            let answer = opened.responder.seal(Outcome::Done, &payload)?;
            spent[2] += start.elapsed();
            let start = Instant::now();
            let opened = request.answer_key.open(job, Outcome::Done, &answer)?;
            spent[3] += start.elapsed();
            anyhow::ensure!(opened == payload, "the answer changed");
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        Ok(SealCost {
            requests: n,
            seal_request_us: us(spent[0]),
            open_request_us: us(spent[1]),
            seal_answer_us: us(spent[2]),
            open_answer_us: us(spent[3]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_bench_job_goes_both_ways() {
        let sealing = Sealing::new().unwrap();
        let payload = json!({"n": 7, "submitter": 3});
        let (body, key) = sealing.submit_body(&payload, 30.0).unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["idempotency_key"], key.reference());
        let stored = RawValue::from_string(body["payload"].to_string()).unwrap();
        let answer: Value =
            serde_json::from_str(&sealing.answer_body(42, KIND, &stored).unwrap()).unwrap();
        assert_eq!(
            key.open(42, Outcome::Done, &answer["result"]).unwrap(),
            payload
        );
        // The same request under another job id is a replay.
        assert!(sealing.answer_body(43, KIND, &stored).is_err());
        let cost = SealCost::measure(3).unwrap();
        assert_eq!(cost.requests, 3);
        assert!(cost.open_request_us > 0.0);
    }
}
