//! The simulated listener: holds the SSE stream on one instance and answers
//! every job with `{"result": <its payload>}` over HTTP, concurrently, spreading
//! the answers across the instances like a load balancer would. With sealing,
//! it opens each payload and seals the answer as castellum's agent does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use backchannel::agent::sse::{Item, Parser};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::load::Connections;
use super::sealing::Sealing;

/// A job as the stream sends it (only what the answer needs).
#[derive(Deserialize)]
struct StreamedJob {
    id: i64,
    kind: String,
    payload: Box<RawValue>,
}

/// What the listener did, counted as it goes.
#[derive(Default)]
pub struct ListenerCounts {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub errors: AtomicU64,
}

/// A running simulated listener; `stop` closes the stream.
pub struct Listener {
    pub counts: Arc<ListenerCounts>,
    /// Set before the brokers stop: the end of the stream is then expected.
    closing: CancellationToken,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Listener {
    /// Open the stream on `stream_url` (the first instance) and start answering
    /// on `answer_urls` in turn, with up to `in_flight` answers at once (one
    /// keep-alive connection each). Returns once the stream is open.
    pub async fn start(
        client: reqwest::Client,
        stream_url: &str,
        answer_urls: Vec<String>,
        token: &str,
        in_flight: usize,
        sealing: Option<Arc<Sealing>>,
    ) -> anyhow::Result<Listener> {
        let response = open(&client, stream_url, token).await?;
        let counts = Arc::new(ListenerCounts::default());
        let closing = CancellationToken::new();
        let stop = CancellationToken::new();
        // Connections of their own per instance, so that each answer goes where
        // its turn says.
        let answers = Arc::new(
            answer_urls
                .iter()
                .map(|_| Connections::new(in_flight))
                .collect::<Vec<_>>(),
        );
        let task = tokio::spawn(answer_all(
            answers,
            response,
            answer_urls,
            token.to_owned(),
            counts.clone(),
            (closing.clone(), stop.clone()),
            sealing,
        ));
        Ok(Listener {
            counts,
            closing,
            stop,
            task,
        })
    }

    /// The brokers are about to stop: their closing the stream is no error.
    /// (Stopping the brokers first ends the stream cleanly on the server side.)
    pub fn expect_end(&self) {
        self.closing.cancel();
    }

    /// Close the stream and return what went wrong with it, if anything.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("the listener task failed")?
    }
}

/// Open the stream, retrying briefly while an earlier stream is still being released.
async fn open(
    client: &reqwest::Client,
    stream_url: &str,
    token: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut last = String::new();
    for _ in 0..50 {
        let response = client
            .get(format!("{stream_url}/v1/stream"))
            .bearer_auth(token)
            .header("x-listener-id", "backchannel-bench")
            .send()
            .await
            .context("opening the stream")?;
        if response.status() == reqwest::StatusCode::OK {
            return Ok(response);
        }
        last = format!(
            "{}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the stream did not open: {last}")
}

async fn answer_all(
    answers: Arc<Vec<Connections>>,
    response: reqwest::Response,
    answer_urls: Vec<String>,
    token: String,
    counts: Arc<ListenerCounts>,
    (closing, stop): (CancellationToken, CancellationToken),
    sealing: Option<Arc<Sealing>>,
) -> anyhow::Result<()> {
    let mut bytes = response.bytes_stream();
    let mut parser = Parser::new();
    let token: Arc<str> = token.into();
    let mut turn = 0usize;
    loop {
        let event = match parser.next_item() {
            Some(Item::Event(event)) => event,
            Some(_) => continue,
            None => {
                let chunk = tokio::select! {
                    chunk = bytes.next() => chunk,
                    _ = stop.cancelled() => return Ok(()),
                };
                match chunk {
                    None | Some(Err(_)) if closing.is_cancelled() => return Ok(()),
                    None => bail!("the broker closed the stream"),
                    Some(Err(error)) => bail!("the stream broke: {error}"),
                    Some(Ok(chunk)) => parser.push(&chunk)?,
                }
                continue;
            }
        };
        if event.event != "job" {
            continue;
        }
        counts.received.fetch_add(1, Ordering::Relaxed);
        let job: StreamedJob =
            serde_json::from_str(&event.data).context("a job event that is not a job")?;
        let target = turn;
        turn = turn.wrapping_add(1);
        let instance = target % answer_urls.len();
        let base = answer_urls[instance].clone();
        let path = format!("/v1/jobs/{}/result", job.id);
        let (answers, token, counts) = (answers.clone(), token.clone(), counts.clone());
        let sealing = sealing.clone();
        tokio::spawn(async move {
            let body = match &sealing {
                Some(sealing) => sealing.answer_body(job.id, &job.kind, &job.payload),
                None => Ok(json!({ "result": job.payload }).to_string()),
            };
            let ok = match body {
                Ok(body) => matches!(
                    answers[instance]
                        .post(target / answers.len(), &base, &path, &token, body)
                        .await,
                    Ok((status, _)) if status == hyper::StatusCode::OK
                ),
                Err(_) => false,
            };
            let counter = if ok { &counts.answered } else { &counts.errors };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
}
