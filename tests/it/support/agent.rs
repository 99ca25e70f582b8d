//! What the agent tests run against: a test handler (the "internal endpoint"),
//! the agent in-process or as a child process, and a stream that goes silent.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backchannel::agent::{Agent, AgentArgs, Status};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::StatusCode;

use crate::support::*;

/// One request the handler received.
#[derive(Debug, Clone)]
pub struct Call {
    pub job_id: i64,
    pub kind: String,
    pub attempt: i32,
    pub deadline: String,
    pub payload: Value,
    /// The `X-Backchannel-Secret` header, if the agent sent one.
    pub secret: Option<String>,
    /// `X-Backchannel-Ref` and `X-Backchannel-Signer` (sealed jobs only).
    pub reference: Option<String>,
    pub signer: Option<String>,
}

/// The internal endpoint, on port 0. Answers `200 {"handled": payload, "by":
/// name, ...}`, or `500 {"oops": true}` for jobs of kind `fail`. While held,
/// it records each call and answers only once released.
pub struct Handler {
    pub url: String,
    calls: mpsc::UnboundedReceiver<Call>,
    all: Arc<Mutex<Vec<Call>>>,
    gate: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Handler {
    pub async fn new(name: &str) -> Handler {
        Handler::start(name, true).await
    }

    /// A handler that keeps every request waiting until `release`.
    pub async fn holding(name: &str) -> Handler {
        Handler::start(name, false).await
    }

    /// A handler on `addr` (a port that was free: the handler "comes up" there).
    pub async fn at(name: &str, addr: std::net::SocketAddr) -> Handler {
        let listener = TcpListener::bind(addr).await.unwrap();
        Handler::serve(name, true, listener)
    }

    async fn start(name: &str, open: bool) -> Handler {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Handler::serve(name, open, listener)
    }

    fn serve(name: &str, open: bool, listener: TcpListener) -> Handler {
        let (tx, calls) = mpsc::unbounded_channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        let (gate, _) = watch::channel(open);
        let state = (tx, all.clone(), gate.clone(), name.to_owned());
        let route = warp::post()
            .and(warp::header::<i64>("x-backchannel-job-id"))
            .and(warp::header::<String>("x-backchannel-kind"))
            .and(warp::header::<i32>("x-backchannel-attempt"))
            .and(warp::header::<String>("x-backchannel-deadline"))
            .and(warp::header::optional::<String>("x-backchannel-secret"))
            .and(sealed_headers())
            .and(warp::body::json::<Value>())
            .and(warp::any().map(move || state.clone()))
            .then(
                |job_id, kind: String, attempt, deadline, secret, (reference, signer), payload: Value, state: State| async move {
                    let (tx, all, gate, name) = state;
                    let call = Call {
                        job_id,
                        kind: kind.clone(),
                        attempt,
                        deadline,
                        payload: payload.clone(),
                        secret,
                        reference,
                        signer,
                    };
                    all.lock().unwrap().push(call.clone());
                    let _ = tx.send(call);
                    let mut gate = gate.subscribe();
                    let _ = gate.wait_for(|open| *open).await;
                    let (status, body) = if kind == "fail" {
                        (StatusCode::INTERNAL_SERVER_ERROR, json!({"oops": true}))
                    } else {
                        let body = json!({"handled": payload, "by": name, "job": job_id, "attempt": attempt});
                        (StatusCode::OK, body)
                    };
                    warp::reply::with_status(warp::reply::json(&body), status)
                },
            );
        let url = format!("http://{}/backchannel/", listener.local_addr().unwrap());
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        Handler {
            url,
            calls,
            all,
            gate,
            task,
        }
    }

    /// The next call, waiting up to `timeout`.
    pub async fn next_call(&mut self, timeout: Duration) -> Option<Call> {
        tokio::time::timeout(timeout, self.calls.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.all.lock().unwrap().clone()
    }

    pub fn release(&self) {
        self.gate.send_replace(true);
    }
}

/// `X-Backchannel-Ref` and `X-Backchannel-Signer`, each if sent.
fn sealed_headers()
-> impl Filter<Extract = ((Option<String>, Option<String>),), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("x-backchannel-ref")
        .and(warp::header::optional::<String>("x-backchannel-signer"))
        .map(|reference, signer| (reference, signer))
}

type State = (
    mpsc::UnboundedSender<Call>,
    Arc<Mutex<Vec<Call>>>,
    watch::Sender<bool>,
    String,
);

impl Drop for Handler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL where nothing listens.
pub async fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/backchannel/")
}

/// One request a [`Canned`] server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The `X-Backchannel-Secret` header, if any.
    pub secret: Option<String>,
}

/// An HTTP server of the test's own that gives every request the same
/// answer (status, headers, body) and records each one.
pub struct Canned {
    pub url: String,
    pub origin: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Canned {
    pub async fn start(status: u16, headers: &[(&str, &str)], body: &str) -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let body = body.to_owned();
        let route = warp::method()
            .and(warp::header::optional::<String>("x-backchannel-secret"))
            .map(move |method: warp::http::Method, secret| {
                record.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    secret,
                });
                let mut reply = warp::http::Response::builder().status(status);
                for (name, value) in &headers {
                    reply = reply.header(name, value);
                }
                reply.body(body.clone()).unwrap()
            });
        let task = tokio::spawn(warp::serve(route).incoming(listener).run());
        Canned {
            url: format!("{origin}/backchannel/job"),
            origin,
            seen,
            task,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP listener that only counts the connections it is offered.
pub struct Counter {
    pub origin: String,
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counter {
    pub async fn start() -> Counter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(socket);
            }
        });
        Counter {
            origin,
            count,
            task,
        }
    }

    pub fn connections(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port where nothing listens now, and its address.
pub async fn free_addr() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Agent arguments for the broker at `base`.
pub fn agent_args(base: &str, forward: Option<&str>) -> AgentArgs {
    let mut args = AgentArgs::new(base, LISTENER);
    match forward {
        Some(url) => args.forward = Some(url.to_owned()),
        None => args.echo = true,
    }
    args
}

/// An agent running in this process.
pub struct RunningAgent {
    pub status: watch::Receiver<Status>,
    /// The health listener's address, when `health_bind` was set.
    pub health: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningAgent {
    pub fn start(args: AgentArgs) -> RunningAgent {
        let agent = Agent::new(args).expect("valid agent arguments");
        let status = agent.status();
        let health = agent.health_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(agent.run(shutdown.clone()));
        RunningAgent {
            status,
            health,
            shutdown,
            task: Some(task),
        }
    }

    /// Wait until the status satisfies `check`; false after `timeout`.
    pub async fn until(&mut self, timeout: Duration, check: impl FnMut(&Status) -> bool) -> bool {
        tokio::time::timeout(timeout, self.status.wait_for(check))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Shut down and wait for the agent to return.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(LONG, task)
                .await
                .expect("the agent stops")
                .expect("the agent does not panic");
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The `backchannel agent` binary as a child process, killed if the test ends
/// early. The token goes by environment, as a deployment should pass it.
pub fn agent_process(base: &str, forward: &str, extra: &[&str]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"));
    command
        .arg("agent")
        .args(["--server", base, "--forward", forward])
        .args(extra)
        .env("BACKCHANNEL_TOKEN", LISTENER)
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or("off".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("BACKCHANNEL_") && name != "BACKCHANNEL_TOKEN" {
            command.env_remove(name);
        }
    }
    if std::env::var("TEST_LOG").is_err() {
        command.stderr(Stdio::null());
    }
    command.spawn().expect("start the agent binary")
}

/// `backchannel agent` as a child process with its log captured: JSON lines
/// at `info`, each parsed (lines that are not JSON are kept as strings).
pub struct LoggedAgent {
    pub child: tokio::process::Child,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl LoggedAgent {
    /// `args` after `agent`; `env` on top of a clean environment (no token:
    /// give one in `env` or `args`).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> LoggedAgent {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"));
        command.arg("agent").args(args);
        for (name, _) in std::env::vars() {
            if name.starts_with("BACKCHANNEL_") {
                command.env_remove(name);
            }
        }
        command
            .env("RUST_LOG", "info")
            .env("BACKCHANNEL_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start the agent binary");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(value);
            }
        });
        LoggedAgent { child, logs }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// The lines whose message contains `text`.
    pub fn logged(&self, text: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            })
            .collect()
    }

    /// Wait until at least `n` lines contain `text` in their message.
    pub async fn until_logged(&self, timeout: Duration, text: &str, n: usize) -> Vec<Value> {
        let found = eventually(timeout, || async { self.logged(text).len() >= n }).await;
        assert!(found, "no {n} lines with {text:?} in:\n{:#?}", self.lines());
        self.logged(text)
    }

    /// Every line as text (to check what never appears).
    pub fn text(&self) -> String {
        self.lines()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Send SIGTERM to a child process.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("the child runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// A fake broker whose streams go silent. Connection 1 answers 200 with
/// `retry: 50` and then `: keepalive` every `tick` until `talk_until`, then
/// nothing; connection 2 never answers at all; later ones are only counted.
/// Each accept is reported with its time; connection 1 also reports when it
/// fell silent.
pub struct SilentBroker {
    pub base: String,
    pub events: mpsc::UnboundedReceiver<(&'static str, Instant)>,
    task: JoinHandle<()>,
}

impl SilentBroker {
    pub async fn start(tick: Duration, talk_for: Duration) -> SilentBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            for n in 1.. {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let _ = tx.send(("accepted", Instant::now()));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut socket = read_request(socket).await;
                    if n == 1 {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\nretry: 50\n\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        let until = Instant::now() + talk_for;
                        while Instant::now() < until {
                            tokio::time::sleep(tick).await;
                            let _ = socket.write_all(b": keepalive\n\n").await;
                        }
                        let _ = tx.send(("silent", Instant::now()));
                    }
                    // Hold the connection open, saying nothing.
                    std::future::pending::<()>().await;
                    drop(socket);
                });
            }
        });
        SilentBroker { base, events, task }
    }

    /// The next event, or a panic after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> (&'static str, Instant) {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .expect("an event from the silent broker in time")
            .expect("the silent broker runs")
    }
}

impl Drop for SilentBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(mut socket: TcpStream) -> TcpStream {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
    socket
}
