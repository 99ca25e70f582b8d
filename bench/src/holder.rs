//! Waiting requests held by child processes (`backchannel-bench hold`): each
//! waiting request is a socket in the bench as well as in the broker, and a
//! process may hold only so many (this machine caps open files at 20,000 per
//! process and lets no process raise it). Each holder sends its share of the
//! requests from a loopback address of its own (127.0.0.N: ~28,000 ephemeral
//! ports each), keeps them waiting, and reports how they ended.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use super::brokers::SUBMITTER_TOKEN;
use super::procfs;

/// How long each request asks to wait (far beyond any window).
const WAIT_SECS: u64 = 600;
/// Requests one holder (and one broker instance) takes at most.
pub const PER_PROCESS: usize = 18_000;

/// `backchannel-bench hold`: hold waiting requests for the parent bench.
#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    /// Brokers to send to, in turn.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// Requests to send.
    #[arg(long)]
    pub count: usize,
    /// The loopback address to send from (127.x.y.z): each holder its own,
    /// so that its connections draw on ports of their own.
    #[arg(long)]
    pub source: std::net::Ipv4Addr,
    /// Requests per second while sending.
    #[arg(long)]
    pub rate: usize,
    /// A number for the requests' payloads, so that holders differ.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
}

/// How a holder's requests ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Held {
    /// Answered `202` after the parent said the window closed (the broker's stop).
    pub accepted: u64,
    /// Answered before the window closed (nobody answers: should not happen).
    pub early: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Run as a holder: send, wait for "close" on stdin, report on stdout once
/// every request has ended.
pub async fn hold(args: HoldArgs) -> anyhow::Result<()> {
    procfs::raise_open_files();
    let from = args.source;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(20))
        // The broker probes idle connections itself (every heartbeat); with
        // reqwest's own probes (15 s) on top, both ends probing tens of
        // thousands of loopback connections, a few were aborted.
        .tcp_keepalive(None)
        .local_address(std::net::IpAddr::V4(from))
        .build()?;
    let held = Arc::new(Mutex::new(Held::default()));
    let closing = CancellationToken::new();
    let closer = closing.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "close" {
                break;
            }
        }
        closer.cancel();
        // Tell the parent: only then may it stop the brokers, whose `202`s
        // must find `closing` set.
        println!("closed");
    });
    let per_tick = (args.rate / 100).max(1);
    let mut requests = Vec::with_capacity(args.count);
    for n in 0..args.count {
        if n > 0 && n % per_tick == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let url = &args.urls[n % args.urls.len()];
        let request = client
            .post(format!("{url}/v1/jobs?wait={WAIT_SECS}"))
            .bearer_auth(SUBMITTER_TOKEN)
            .json(&json!({"kind": "bench.idle", "payload": {"n": args.offset + n}, "timeout": WAIT_SECS}))
            .send();
        let (held, closing) = (held.clone(), closing.clone());
        requests.push(tokio::spawn(async move {
            let response = request.await;
            let mut held = held.lock().expect("held lock");
            let error = match response {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED && closing.is_cancelled() => {
                    held.accepted += 1;
                    return;
                }
                Ok(r) => format!("answered {} while waiting", r.status()),
                Err(e) => {
                    // reqwest's message stops at "error sending request": the
                    // reason is in its sources.
                    let mut message = format!("request failed: {e}");
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        message.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    message
                }
            };
            if !closing.is_cancelled() {
                held.early += 1;
            }
            held.errors += 1;
            held.first_error.get_or_insert(error);
        }));
    }
    for request in requests {
        let _ = request.await;
    }
    let held = std::mem::take(&mut *held.lock().expect("held lock"));
    println!("{}", serde_json::to_string(&held)?);
    Ok(())
}

/// A holder child process, seen from the parent.
pub struct Holder {
    child: Child,
    count: usize,
    /// The holder's stdout: "closed", then its report.
    lines: Option<Lines<BufReader<ChildStdout>>>,
}

impl Holder {
    /// Start a holder sending `count` requests to `urls` from `source`.
    pub fn spawn(
        urls: &[String],
        count: usize,
        source: std::net::Ipv4Addr,
        rate: usize,
        offset: usize,
    ) -> anyhow::Result<Holder> {
        let program = std::env::current_exe().context("cannot find this program")?;
        let mut command = Command::new(program);
        command.arg("hold");
        for url in urls {
            command.args(["--url", url]);
        }
        command
            .args(["--count", &count.to_string()])
            .args(["--source", &source.to_string()])
            .args(["--rate", &rate.max(1).to_string()])
            .args(["--offset", &offset.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("cannot start a holder")?;
        let lines = child.stdout.take().map(|out| BufReader::new(out).lines());
        Ok(Holder {
            child,
            count,
            lines,
        })
    }

    /// The window closed: answers from now on are the broker's stop.
    /// Returns once the holder has seen it (or after a few seconds). Once:
    /// closing again would read on past "closed" and swallow the report.
    pub async fn close(&mut self) {
        let Some(mut stdin) = self.child.stdin.take() else {
            return;
        };
        let _ = stdin.write_all(b"close\n").await;
        if let Some(lines) = self.lines.as_mut() {
            let seen = async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim() == "closed" {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), seen).await;
        }
    }

    /// How the requests ended, once they all have (or `grace` is over).
    pub async fn report(mut self, grace: Duration) -> Held {
        let count = self.count as u64;
        let report = async {
            let lines = self.lines.as_mut()?;
            loop {
                let line = lines.next_line().await.ok()??;
                if line.trim() != "closed" {
                    return serde_json::from_str::<Held>(&line).ok();
                }
            }
        };
        match tokio::time::timeout(grace, report).await {
            Ok(Some(held)) => held,
            _ => Held {
                errors: count,
                first_error: Some("a holder did not report how its requests ended".into()),
                ..Held::default()
            },
        }
    }
}
