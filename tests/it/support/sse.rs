//! An SSE reader for tests over the agent's parser (the project's one SSE
//! parser); it keeps comments, so that keepalives can be seen.

use std::time::Duration;

use backchannel::agent::sse::{Item, Parser};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::LONG;

/// One item of the stream, as the tests look at it.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
    pub comments: Vec<String>,
}

impl SseEvent {
    pub fn job(&self) -> Option<Value> {
        if self.event.as_deref() == Some("job") {
            self.data
                .as_deref()
                .map(|d| serde_json::from_str(d).expect("job data is JSON"))
        } else {
            None
        }
    }

    fn from_item(item: Item) -> SseEvent {
        match item {
            Item::Retry(delay) => SseEvent {
                retry: Some(delay.as_millis().to_string()),
                ..SseEvent::default()
            },
            Item::Comment(text) => SseEvent {
                comments: vec![text],
                ..SseEvent::default()
            },
            Item::Event(event) => SseEvent {
                event: Some(event.event),
                id: event.id,
                data: Some(event.data),
                ..SseEvent::default()
            },
        }
    }
}

/// The events of an open stream, read on a task of their own.
pub struct Sse {
    pub headers: reqwest::header::HeaderMap,
    rx: mpsc::UnboundedReceiver<SseEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Sse {
    pub fn new(response: reqwest::Response) -> Sse {
        let headers = response.headers().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut bytes = response.bytes_stream();
            let mut parser = Parser::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                if parser.push(&chunk).is_err() {
                    return;
                }
                while let Some(item) = parser.next_item() {
                    if tx.send(SseEvent::from_item(item)).is_err() {
                        return;
                    }
                }
            }
        });
        Sse { headers, rx, task }
    }

    /// The next item, or `None` when the stream ended or `timeout` passed.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next job event (skipping retry and keepalive blocks).
    pub async fn next_job(&mut self, timeout: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next_event(left).await?;
            if let Some(job) = event.job() {
                return Some(job);
            }
        }
    }

    /// The next job within `timeout`: `Ok(Some(job))`, `Ok(None)` when none
    /// came in time, `Err(())` once the stream ended.
    pub async fn poll_job(&mut self, timeout: Duration) -> Result<Option<Value>, ()> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(None) => return Err(()),
                Ok(Some(event)) => {
                    if let Some(job) = event.job() {
                        return Ok(Some(job));
                    }
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// Wait until the server ends the stream; true if it did within `timeout`.
    pub async fn ended(&mut self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(None) => return true,
                Ok(Some(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// The stream's next job event that is not one of `skip`; panics if none comes.
pub async fn next_job_except(sse: &mut Sse, skip: &[i64]) -> Value {
    loop {
        let job = sse.next_job(LONG).await.expect("the stream goes on");
        if !skip.contains(&job["id"].as_i64().unwrap()) {
            return job;
        }
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}
