//! Broker instances in the test process, and a small client for the API.

use std::time::Duration;

use backchannel::app::{self, Running};
use backchannel::config::Settings;
use serde_json::{Value, json};

use super::{CLUSTER_SECRET, LISTENER, SUBMITTER, Sse, TestDb, eventually};

/// Settings for a test instance: small pool, so that parallel tests stay
/// well under PostgreSQL's default 100 connections.
pub fn settings(db: &TestDb) -> Settings {
    let mut settings = Settings::new(&db.url, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 4;
    // Forwarding to the stream's holder on, as a cluster is meant to run.
    settings.cluster_secret = Some(CLUSTER_SECRET.into());
    settings.peers = vec![backchannel::config::peer("127.0.0.1").unwrap()];
    settings
}

/// `settings` with forwarding off: every instance does its own work.
pub fn settings_without_forwarding(db: &TestDb) -> Settings {
    let mut settings = settings(db);
    settings.cluster_secret = None;
    settings.peers.clear();
    settings
}

/// The signature of a forwarded request's `body` under [`CLUSTER_SECRET`].
pub fn hop_signature(body: &[u8]) -> String {
    let mut settings = Settings::new("postgres://unused@127.0.0.1/unused", &[], &[]);
    settings.cluster_secret = Some(CLUSTER_SECRET.into());
    settings.peers = vec![backchannel::config::peer("127.0.0.1").unwrap()];
    backchannel::http::forward::Forwarder::load(&settings)
        .expect("forwarder")
        .expect("forwarding on")
        .sign(body)
}

/// Settings with the periodic background queries (reaper, safety re-check)
/// pushed out of the way, for tests that count every statement.
pub fn quiet_settings(db: &TestDb) -> Settings {
    let mut settings = settings(db);
    settings.reaper_interval = Duration::from_secs_f64(3600.0);
    settings.recheck_interval = Duration::from_secs_f64(3600.0);
    settings
}

/// One broker instance in this process, on its own port, pool and sessions.
pub struct Instance {
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
}

pub async fn instance(db: &TestDb) -> Instance {
    instance_with(settings(db)).await
}

pub async fn instance_with(settings: Settings) -> Instance {
    let instance = instance_unready(settings).await;
    instance.wait_ready().await;
    instance
}

/// Start an instance that must refuse to start; its message, with its causes.
pub async fn refused(settings: Settings) -> String {
    match app::start(settings).await {
        Ok(running) => {
            running.stop().await;
            panic!("the broker started");
        }
        Err(error) => format!("{error:#}"),
    }
}

/// An instance that started, without waiting for `/readyz` to say 200.
pub async fn instance_unready(settings: Settings) -> Instance {
    let running = app::start(settings).await.expect("start broker");
    let mut instance = Instance::at(&format!("http://{}", running.addr), reqwest::Client::new());
    instance.running = Some(running);
    instance
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON; a body that is not JSON (or nests deeper than the
    /// parser goes) as one JSON string.
    pub body: Value,
    /// The body as sent, for what parsing would change (long digits, depth).
    pub text: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The status, as reqwest's `Response::status` spells it.
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// A request sent on a task of its own: await it for its `Reply`.
pub type Pending = tokio::task::JoinHandle<Reply>;

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Whether the instance answers `/readyz` with 200 right now.
pub async fn ready(instance: &Instance) -> bool {
    matches!(instance.http.get(instance.url("/readyz")).send().await, Ok(r) if r.status() == 200)
}

/// Requests are sent one way: build one (`*_request`, or `http` with `url`
/// for anything else), then `send` it and await the reply, or `spawn` it and
/// await the reply later. `submit`, `get`, `cancel`, `answer` and
/// `spawn_submit`, `spawn_get` say both at once.
impl Instance {
    /// A client of an instance at `base`: another process, or this one from a
    /// task of its own or through a client of the test's own.
    pub fn at(base: &str, http: reqwest::Client) -> Instance {
        Instance {
            running: None,
            base: base.to_owned(),
            http,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("instance is running")
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if ready(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("instance at {} never became ready", self.base);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Whether exactly `n` requests wait on this instance at some point within `within`.
    pub async fn waiting_eventually(&self, n: usize, within: Duration) -> bool {
        eventually(
            within,
            || async move { self.running().broker.waiting() == n },
        )
        .await
    }

    /// The text of this instance's `/metrics`.
    pub async fn metrics(&self) -> String {
        self.send(self.http.get(self.url("/metrics"))).await.text
    }

    /// Send `request` and wait for the reply.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        reply(request.send().await.expect("request")).await
    }

    /// Send `request` on a task of its own (a waiting request, one to be cut
    /// off, several at once): await the handle for the reply.
    pub fn spawn(&self, request: reqwest::RequestBuilder) -> Pending {
        tokio::spawn(async move { reply(request.send().await.expect("request")).await })
    }

    /// `POST /v1/jobs[?wait=]` with `body`, as submitter.
    pub fn submit_request(&self, body: &Value, wait: Option<f64>) -> reqwest::RequestBuilder {
        let mut url = self.url("/v1/jobs");
        if let Some(wait) = wait {
            url = format!("{url}?wait={wait}");
        }
        self.http.post(url).bearer_auth(SUBMITTER).json(body)
    }

    /// `GET /v1/jobs/{id}[?wait=]`, as submitter.
    pub fn get_request(&self, id: i64, wait: Option<f64>) -> reqwest::RequestBuilder {
        let mut url = self.url(&format!("/v1/jobs/{id}"));
        if let Some(wait) = wait {
            url = format!("{url}?wait={wait}");
        }
        self.http.get(url).bearer_auth(SUBMITTER)
    }

    /// `DELETE /v1/jobs/{id}`, as submitter.
    pub fn cancel_request(&self, id: i64) -> reqwest::RequestBuilder {
        self.http
            .delete(self.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(SUBMITTER)
    }

    /// `POST /v1/jobs/{id}/result` with `body`, as listener.
    pub fn answer_request(&self, id: i64, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(&format!("/v1/jobs/{id}/result")))
            .bearer_auth(LISTENER)
            .json(body)
    }

    /// POST /v1/jobs with `body` as submitter.
    pub async fn submit(&self, body: Value, wait: Option<f64>) -> Reply {
        self.send(self.submit_request(&body, wait)).await
    }

    /// `POST /v1/jobs?wait=...` with `body`, sent in the background.
    pub fn spawn_submit(&self, body: Value, wait: f64) -> Pending {
        self.spawn(self.submit_request(&body, Some(wait)))
    }

    /// Submit a job of `kind` with `payload`; returns its id (asserts 202).
    pub async fn submit_job(&self, kind: &str, payload: Value) -> i64 {
        let r = self
            .submit(json!({"kind": kind, "payload": payload}), None)
            .await;
        assert_eq!(r.status, 202, "submit: {:?}", r.body);
        r.body["id"].as_i64().expect("id")
    }

    pub async fn get(&self, id: i64, wait: Option<f64>) -> Reply {
        self.send(self.get_request(id, wait)).await
    }

    /// `GET /v1/jobs/{id}?wait=...` sent in the background.
    pub fn spawn_get(&self, id: i64, wait: f64) -> Pending {
        self.spawn(self.get_request(id, Some(wait)))
    }

    pub async fn cancel(&self, id: i64) -> Reply {
        self.send(self.cancel_request(id)).await
    }

    pub async fn answer(&self, id: i64, body: Value) -> Reply {
        self.send(self.answer_request(id, &body)).await
    }

    /// Open the stream; `Ok` with the SSE reader on 200, `Err` with the reply otherwise.
    pub async fn stream(&self, listener_id: Option<&str>) -> Result<Sse, Reply> {
        self.stream_as(LISTENER, listener_id).await
    }

    /// Open the stream with `token`; as `stream`.
    pub async fn stream_as(&self, token: &str, listener_id: Option<&str>) -> Result<Sse, Reply> {
        let mut request = self.http.get(self.url("/v1/stream")).bearer_auth(token);
        if let Some(id) = listener_id {
            request = request.header("X-Listener-Id", id);
        }
        let response = request.send().await.expect("stream request");
        if response.status() != 200 {
            return Err(reply(response).await);
        }
        Ok(Sse::new(response))
    }

    /// Open the stream, retrying while it is busy, for up to `timeout`.
    pub async fn stream_eventually(
        &self,
        listener_id: Option<&str>,
        timeout: Duration,
    ) -> Option<Sse> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match self.stream(listener_id).await {
                Ok(sse) => return Some(sse),
                Err(r) => assert_eq!(
                    r.status, 409,
                    "only listener_busy is expected: {:?}",
                    r.body
                ),
            }
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown();
        }
    }
}
