//! The submitters: N concurrent loops, each doing one round trip after the
//! other (a closed loop). Latencies are recorded only for round trips that
//! start and end inside the measuring window; the warm-up before it counts
//! toward the totals only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::sealing::Sealing;
use super::stats;
use backchannel::seal::Outcome;

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

/// Plain HTTP/1.1 keep-alive connections for the load and the simulated
/// listener, one per slot, driven with hyper's client connection directly.
/// The load runs on the same two cores as the broker and PostgreSQL, so the
/// lighter the client, the more of the machine the system under test gets
/// (reqwest's pooled client cost noticeably more CPU per request).
pub struct Connections {
    slots: Vec<tokio::sync::Mutex<Option<SendRequest<String>>>>,
}

impl Connections {
    pub fn new(slots: usize) -> Connections {
        Connections {
            slots: (0..slots.max(1))
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
        }
    }

    /// POST `body` (JSON) to `base_url` (`http://host:port`) + `path` on slot
    /// `index`; the status and the whole response body.
    pub async fn post(
        &self,
        index: usize,
        base_url: &str,
        path: &str,
        token: &str,
        body: String,
    ) -> Result<(hyper::StatusCode, Vec<u8>), String> {
        let authority = base_url.trim_start_matches("http://");
        let mut slot = self.slots[index % self.slots.len()].lock().await;
        if slot.as_ref().is_none_or(|sender| sender.is_closed()) {
            *slot = Some(
                connect(authority)
                    .await
                    .map_err(|e| format!("connect: {e}"))?,
            );
        }
        let sender = slot.as_mut().expect("connected above");
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = read_body(response.into_body())
            .await
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }
}

/// One submitter round trip on slot `index`: `POST /v1/jobs?wait=...` and
/// expect `200 done`.
pub async fn submit_and_wait(
    connections: &Connections,
    index: usize,
    base_url: &str,
    token: &str,
    payload: serde_json::Value,
    wait_secs: f64,
) -> Result<(), String> {
    let body = json!({"kind": "bench.echo", "payload": payload, "timeout": wait_secs});
    let body = submit(
        connections,
        index,
        base_url,
        token,
        body.to_string(),
        wait_secs,
    )
    .await?;
    let job: JobState = serde_json::from_slice(&body).map_err(|e| format!("submit body: {e}"))?;
    if job.state != "done" {
        return Err(format!("job ended {} instead of done", job.state));
    }
    Ok(())
}

/// As [`submit_and_wait`], sealed: the payload sealed, the answer opened
/// (and checked to be the payload echoed).
pub async fn submit_sealed_and_wait(
    connections: &Connections,
    index: usize,
    (base_url, token): (&str, &str),
    sealing: &Sealing,
    payload: serde_json::Value,
    wait_secs: f64,
) -> Result<(), String> {
    let (body, key) = sealing.submit_body(&payload, wait_secs)?;
    let body = submit(connections, index, base_url, token, body, wait_secs).await?;
    let job: SealedJob = serde_json::from_slice(&body).map_err(|e| format!("submit body: {e}"))?;
    if job.state != "done" {
        return Err(format!("job ended {} instead of done", job.state));
    }
    let answer = key
        .open(job.id, Outcome::Done, &job.result)
        .map_err(|e| format!("open the answer: {e}"))?;
    if answer != payload {
        return Err("the opened answer is not the payload".into());
    }
    Ok(())
}

#[derive(Deserialize)]
struct SealedJob {
    id: i64,
    state: String,
    #[serde(default)]
    result: serde_json::Value,
}

/// `POST /v1/jobs?wait=...` with `body`; the response body of a `200`.
async fn submit(
    connections: &Connections,
    index: usize,
    base_url: &str,
    token: &str,
    body: String,
    wait_secs: f64,
) -> Result<Vec<u8>, String> {
    let path = format!("/v1/jobs?wait={wait_secs}");
    let (status, body) = connections
        .post(index, base_url, &path, token, body)
        .await
        .map_err(|e| format!("submit: {e}"))?;
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "submit answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(body)
}

async fn connect(authority: &str) -> Result<SendRequest<String>, Box<dyn std::error::Error>> {
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(authority),
    )
    .await??;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The whole body of a response.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut bytes = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| hyper::body::Body::poll_frame(std::pin::Pin::new(&mut body), cx))
            .await
    {
        if let Ok(data) = frame?.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
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
