#![allow(dead_code)]
//! Test harness: a fresh database per test, broker instances bound to port 0,
//! and small HTTP and SSE clients.

use std::sync::OnceLock;
use std::time::Duration;

use backchannel::config::Settings;
use backchannel::server::{self, Running};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_postgres::NoTls;

pub const SUBMITTER: &str = "test-submitter-token-0001";
pub const LISTENER: &str = "test-listener-token-0001";

/// Where tests may create databases (a superuser or a role with CREATEDB).
pub fn admin_url() -> String {
    std::env::var("BACKCHANNEL_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The admin URL with another database name.
pub fn url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin.rsplit_once('/').expect("admin URL has a database");
    format!("{base}/{database}")
}

pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        init_tracing();
        let name = format!("bc_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = url_for(&name);
        TestDb { name, url }
    }

    /// A plain connection to the test database (for assertions and SQL clients).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    pub async fn count_jobs(&self) -> i64 {
        let client = self.client().await;
        let row = client
            .query_one("SELECT count(*) FROM backchannel.jobs", &[])
            .await
            .expect("count jobs");
        row.get(0)
    }

    /// Connections open on this database right now (other than `exclude_pid`).
    pub async fn connections(&self, client: &tokio_postgres::Client) -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("count connections")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Settings for a test instance: small pool, so that parallel tests stay
/// well under PostgreSQL's default 100 connections.
pub fn settings(db: &TestDb) -> Settings {
    let mut settings = Settings::new(&db.url, &[SUBMITTER], &[LISTENER]);
    settings.pool_size = 4;
    settings
}

/// Settings with the periodic background queries (reaper, safety re-check)
/// pushed out of the way, for tests that count every statement.
pub fn quiet_settings(db: &TestDb) -> Settings {
    let mut settings = settings(db);
    settings.reaper_interval = 3600.0;
    settings.recheck_interval = 3600.0;
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
    let running = server::start(settings).await.expect("start broker");
    let base = format!("http://{}", running.addr);
    let instance = Instance {
        running: Some(running),
        base,
        http: reqwest::Client::new(),
    };
    instance.wait_ready().await;
    instance
}

/// A response reduced to what tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

impl Instance {
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
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("instance at {} never became ready", self.base);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        reply(request.send().await.expect("request")).await
    }

    /// POST /v1/jobs with `body` as submitter.
    pub async fn submit(&self, body: Value, wait: Option<f64>) -> Reply {
        let mut url = self.url("/v1/jobs");
        if let Some(wait) = wait {
            url = format!("{url}?wait={wait}");
        }
        self.send(self.http.post(url).bearer_auth(SUBMITTER).json(&body))
            .await
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
        let mut url = self.url(&format!("/v1/jobs/{id}"));
        if let Some(wait) = wait {
            url = format!("{url}?wait={wait}");
        }
        self.send(self.http.get(url).bearer_auth(SUBMITTER)).await
    }

    pub async fn cancel(&self, id: i64) -> Reply {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/jobs/{id}")))
                .bearer_auth(SUBMITTER),
        )
        .await
    }

    pub async fn answer(&self, id: i64, body: Value) -> Reply {
        self.send(
            self.http
                .post(self.url(&format!("/v1/jobs/{id}/result")))
                .bearer_auth(LISTENER)
                .json(&body),
        )
        .await
    }

    /// Open the stream; `Ok` with the SSE reader on 200, `Err` with the reply otherwise.
    pub async fn stream(&self, listener_id: Option<&str>) -> Result<Sse, Reply> {
        let mut request = self.http.get(self.url("/v1/stream")).bearer_auth(LISTENER);
        if let Some(id) = listener_id {
            request = request.header("X-Listener-Id", id);
        }
        let response = request.send().await.expect("stream request");
        if response.status() != 200 {
            return Err(reply(response).await);
        }
        Ok(Sse::new(response))
    }
}

impl Instance {
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

/// One parsed SSE block.
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
}

/// A minimal SSE reader for tests; keeps comments so keepalives can be seen.
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
            let mut buffer = String::new();
            let mut current = SseEvent::default();
            while let Some(Ok(chunk)) = bytes.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(pos) = buffer.find('\n') {
                    let line: String = buffer.drain(..=pos).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        let event = std::mem::take(&mut current);
                        if tx.send(event).is_err() {
                            return;
                        }
                        continue;
                    }
                    let (field, value) = match line.split_once(':') {
                        Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                        None => (line, ""),
                    };
                    match field {
                        "" => current.comments.push(value.to_string()),
                        "event" => current.event = Some(value.to_string()),
                        "id" => current.id = Some(value.to_string()),
                        "data" => current.data = Some(value.to_string()),
                        "retry" => current.retry = Some(value.to_string()),
                        _ => {}
                    }
                }
            }
        });
        Sse { headers, rx, task }
    }

    /// The next SSE block, or `None` when the stream ended or `timeout` passed.
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

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Retry `check` every 20 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub const SECOND: Duration = Duration::from_secs(1);
pub const LONG: Duration = Duration::from_secs(10);

/// `GET /v1/jobs/{id}?wait=...` sent in the background.
pub fn spawn_get(base: &str, id: i64, wait: f64) -> tokio::task::JoinHandle<reqwest::Response> {
    let url = format!("{base}/v1/jobs/{id}?wait={wait}");
    tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(SUBMITTER)
            .send()
            .await
            .unwrap()
    })
}

/// `POST /v1/jobs?wait=...` with `body`, sent in the background.
pub fn spawn_submit(
    base: &str,
    wait: f64,
    body: Value,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let url = format!("{base}/v1/jobs?wait={wait}");
    tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(SUBMITTER)
            .json(&body)
            .send()
            .await
            .unwrap()
    })
}
