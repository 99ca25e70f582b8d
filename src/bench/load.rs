//! The submitters: N concurrent loops, each doing one round trip after the
//! other (a closed loop). Latencies are recorded only for round trips that
//! start and end inside the measuring window; the warm-up before it counts
//! toward the totals only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::stats;

/// Warm-up until `from`, measure until `until`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub until: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Window {
        let from = Instant::now() + warmup;
        Window {
            from,
            until: from + duration,
        }
    }

    pub fn seconds(&self) -> f64 {
        (self.until - self.from).as_secs_f64()
    }

    fn measures(&self, started: Instant, ended: Instant) -> bool {
        started >= self.from && ended <= self.until
    }
}

/// What the loops did.
pub struct LoadOutcome {
    pub histogram: Histogram<u64>,
    /// Round trips that started and ended inside the window.
    pub measured: u64,
    /// Every successful round trip, warm-up included.
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Run `concurrency` loops of `round_trip(loop_index, sequence)` until the
/// window closes. A failed round trip counts as an error and the loop goes on
/// (after a short pause, so a broken target does not spin).
pub async fn drive<F, Fut>(concurrency: usize, window: Window, round_trip: F) -> LoadOutcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let round_trip = Arc::new(round_trip);
    let loops: Vec<_> = (0..concurrency)
        .map(|index| {
            let round_trip = round_trip.clone();
            tokio::spawn(async move {
                let mut own = LoadOutcome {
                    histogram: stats::histogram(),
                    measured: 0,
                    completed: 0,
                    errors: 0,
                    first_error: None,
                };
                let mut sequence = 0u64;
                while Instant::now() < window.until {
                    sequence += 1;
                    let started = Instant::now();
                    let outcome = round_trip(index, sequence).await;
                    let ended = Instant::now();
                    match outcome {
                        Ok(()) => {
                            own.completed += 1;
                            if window.measures(started, ended) {
                                own.measured += 1;
                                let micros = (ended - started).as_micros() as u64;
                                stats::record(&mut own.histogram, micros);
                            }
                        }
                        Err(error) => {
                            own.errors += 1;
                            own.first_error.get_or_insert(error);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                own
            })
        })
        .collect();
    let mut total = LoadOutcome {
        histogram: stats::histogram(),
        measured: 0,
        completed: 0,
        errors: 0,
        first_error: None,
    };
    for handle in loops {
        match handle.await {
            Ok(own) => {
                total
                    .histogram
                    .add(&own.histogram)
                    .expect("histograms share bounds");
                total.measured += own.measured;
                total.completed += own.completed;
                total.errors += own.errors;
                if total.first_error.is_none() {
                    total.first_error = own.first_error;
                }
            }
            Err(error) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("a submitter loop failed: {error}"));
            }
        }
    }
    total
}

/// An HTTP client for `concurrency` parallel requests to a few hosts.
pub fn http_client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client without TLS settings builds")
}

#[derive(Deserialize)]
struct JobState {
    state: String,
}

/// One submitter round trip: `POST /v1/jobs?wait=...` and expect `200 done`.
pub async fn submit_and_wait(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    payload: serde_json::Value,
    wait_secs: f64,
) -> Result<(), String> {
    let response = client
        .post(format!("{base_url}/v1/jobs?wait={wait_secs}"))
        .bearer_auth(token)
        .json(&json!({"kind": "bench.echo", "payload": payload, "timeout": wait_secs}))
        .send()
        .await
        .map_err(|e| format!("submit: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("submit: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!(
            "submit answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let job: JobState = serde_json::from_slice(&body).map_err(|e| format!("submit body: {e}"))?;
    if job.state != "done" {
        return Err(format!("job ended {} instead of done", job.state));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_round_trips_inside_the_window_are_measured() {
        let window = Window::starting_now(Duration::from_millis(100), Duration::from_millis(300));
        let outcome = drive(2, window, |_, _| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        })
        .await;
        // 2 loops x 400 ms / 10 ms each; 300 ms of them measured.
        assert_eq!(outcome.completed, 80);
        assert_eq!(outcome.measured, 60);
        assert_eq!(outcome.errors, 0);
        assert_eq!(outcome.histogram.len(), 60);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_counted_with_the_first_message() {
        let window = Window::starting_now(Duration::ZERO, Duration::from_millis(35));
        let outcome = drive(1, window, |_, n| async move { Err(format!("boom {n}")) }).await;
        assert_eq!(outcome.completed, 0);
        assert_eq!(outcome.errors, 4);
        assert_eq!(outcome.first_error.as_deref(), Some("boom 1"));
    }
}
