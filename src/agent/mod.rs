//! `backchannel agent`: the listener side as a ready program.
//!
//! It holds the stream, forwards each job's payload to an internal HTTP
//! endpoint (or echoes it), posts the answer back, and reconnects by itself
//! after any drop. Run it in-process with [`run`] or [`Agent`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), backchannel::agent::AgentError> {
//! use backchannel::agent::{self, AgentArgs};
//! use tokio_util::sync::CancellationToken;
//!
//! let mut args = AgentArgs::new("https://backchannel.example.org", "the-listener-token");
//! args.forward = Some("http://127.0.0.1:8000/backchannel/".into());
//! let shutdown = CancellationToken::new();
//! agent::run(args, shutdown).await
//! # }
//! ```

mod answer;
mod args;
mod forward;
mod health;
mod jobs;
pub mod metrics;
mod probe;
mod sealed;
pub mod sse;
mod status;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use args::{AgentArgs, Config, Sealing, Secret, Target, default_listener_id};
pub use status::Status;

use crate::backoff::{Backoff, jitter};
use crate::seal::Opener;
use forward::Handler;
use jobs::Jobs;
use status::Reporter;
use stream::Ended;

/// The delay before reconnecting until the broker names one with `retry:`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest the agent ever waits between two attempts to connect.
const CAP: Duration = Duration::from_secs(30);
/// How long opening a TCP connection (to the broker or the handler) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After "connection refused" (no broker listens: it is restarting), or a
/// proxy's 502, 503 or 504, the first tries come at this short fixed delay...
const QUICK_RETRY: Duration = Duration::from_millis(250);
const QUICK_TRIES: u32 = 8;
/// ...then the delays grow to at most this: a refused connection costs the
/// broker nothing, so the agent keeps coming back soon.
const REFUSED_CAP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting that cannot work, named in the message.
    #[error("{0}")]
    Config(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A configured agent, not yet running.
pub struct Agent {
    config: Arc<Config>,
    broker: Client,
    handler: Client,
    reporter: Reporter,
    /// Bound at construction when `--health-bind` is set.
    health: Option<std::net::TcpListener>,
    /// Sealed jobs: the keys (read at construction), when configured.
    opener: Option<Arc<Opener>>,
}

/// Check `args`, then run until `shutdown` is cancelled and the jobs in flight
/// are finished (or the shutdown grace is over).
pub async fn run(args: AgentArgs, shutdown: CancellationToken) -> Result<(), AgentError> {
    Agent::new(args)?.run(shutdown).await;
    Ok(())
}

impl Agent {
    /// Check the arguments and build the HTTP clients (HTTPS with the system's
    /// roots; `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` are honoured).
    pub fn new(args: AgentArgs) -> Result<Agent, AgentError> {
        let config = Config::from_args(args)?;
        let opener = config
            .sealing
            .as_ref()
            .map(|sealing| sealed::opener(sealing, &config.channel))
            .transpose()?
            .map(Arc::new);
        let health = config.health_bind.map(health::bind).transpose()?;
        let client = || {
            Client::builder()
                .user_agent(concat!("backchannel-agent/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_keepalive(Duration::from_secs(15))
        };
        // The handler's client never follows a redirect: reqwest would send
        // the shared secret's header on to the redirect's target. A 3xx fails
        // the job instead (`handler_redirect`).
        let handler = client()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Agent {
            config: Arc::new(config),
            broker: client().build()?,
            handler,
            reporter: Reporter::new(),
            health,
            opener,
        })
    }

    /// The address of the health listener, if one is configured.
    pub fn health_addr(&self) -> Option<std::net::SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The agent's metrics in the text exposition (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        self.reporter.metrics().encode()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Watch what the agent does (connections, busy answers, jobs).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.reporter.subscribe()
    }

    /// Hold the stream until `shutdown`, reconnecting after every drop; then
    /// close it, finish the jobs in flight within the grace period, and return.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let stop_health = CancellationToken::new();
        let config = &self.config;
        if let Some(listener) = self.health.take() {
            let reporter = self.reporter.clone();
            let down_after = config.handler_down_after;
            let serve = health::serve(listener, reporter, down_after, stop_health.clone());
            tokio::spawn(serve);
        }
        let _stop_health = stop_health.drop_guard();
        if config.deprecated_token_variable {
            tracing::warn!(
                "BACKCHANNEL_TOKEN and BACKCHANNEL_TOKEN_FILE are deprecated; use BACKCHANNEL_LISTENER_TOKEN or BACKCHANNEL_LISTENER_TOKEN_FILE"
            );
        }
        let target = match &config.target {
            Target::Echo => "echo".to_string(),
            Target::Forward(url, _) => redacted(url),
        };
        tracing::info!(
            server = %redacted(&config.server),
            listener_id = %config.listener_id,
            %target,
            concurrency = config.concurrency,
            "agent starting"
        );
        if let Some(opener) = &self.opener {
            sealed::log_keys(opener, "sealed jobs: opening with these keys");
        }
        let stop_reload = CancellationToken::new();
        let reload = sealed::reload_on_hangup(
            self.opener.clone().zip(config.sealing.clone()),
            self.reporter.clone(),
            stop_reload.clone(),
        );
        tokio::spawn(reload);
        let _stop_reload = stop_reload.drop_guard();
        let _watch = match &config.target {
            Target::Forward(url, secret) => {
                let handler = Handler::new(
                    self.handler.clone(),
                    self.reporter.clone(),
                    config.expect_kit,
                );
                let watch = probe::watch(handler, url.clone(), secret.clone());
                Some(AbortOnDrop(tokio::spawn(watch)))
            }
            Target::Echo => None,
        };
        let jobs = Arc::new(Jobs::new(
            config.clone(),
            (self.broker.clone(), self.handler.clone()),
            self.reporter.clone(),
            self.opener.clone(),
        ));
        let mut backoff = Backoff::new(FIRST_RETRY, CAP);
        let mut no_broker = NoBroker::new();
        let mut busy_before = false;
        loop {
            let ended = tokio::select! {
                ended = stream::hold(config, &self.broker, &jobs, &self.reporter, &mut backoff) => ended,
                _ = shutdown.cancelled() => break,
            };
            let busy = matches!(ended, Ended::Busy(_));
            let pause = self.pause_after(ended, &mut backoff, &mut no_broker, busy_before);
            busy_before = busy;
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.reporter.disconnected("shutdown");
        tracing::info!(
            grace_s = config.shutdown_grace.as_secs_f64(),
            "shutting down: stream closed, finishing the jobs in flight"
        );
        jobs.drain(config.shutdown_grace).await;
        tracing::info!("agent stopped");
    }

    /// Log how the attempt ended and choose the wait before the next one.
    fn pause_after(
        &self,
        ended: Ended,
        backoff: &mut Backoff,
        no_broker: &mut NoBroker,
        busy_before: bool,
    ) -> Duration {
        match ended {
            Ended::Dropped { reason, spoke, .. } => {
                // A stream was open: the broker is back in business.
                *no_broker = NoBroker::new();
                let pause = backoff.next_delay();
                let retry_in_ms = pause.as_millis() as u64;
                if spoke {
                    tracing::info!(%reason, retry_in_ms, "stream disconnected");
                } else {
                    tracing::warn!(%reason, retry_in_ms, "stream disconnected before it spoke");
                }
                pause
            }
            Ended::Busy(retry_after) => {
                self.reporter.failed("busy");
                let pause = match retry_after {
                    Some(delay) => jitter(delay.min(CAP), 0.1).min(CAP),
                    None => backoff.next_delay(),
                };
                let retry_in_ms = pause.as_millis() as u64;
                if busy_before {
                    tracing::debug!(retry_in_ms, "listener still busy");
                } else {
                    tracing::info!(
                        retry_in_ms,
                        "another listener holds the stream (409 listener_busy); waiting"
                    );
                }
                pause
            }
            Ended::Refused(status, explanation) => {
                self.reporter.failed("refused");
                let pause = backoff.next_delay();
                tracing::error!(
                    %status,
                    explanation = explanation.as_deref().unwrap_or(""),
                    retry_in_ms = pause.as_millis() as u64,
                    "the broker refused the listener token"
                );
                pause
            }
            Ended::NoBroker(kind, reason) => {
                // No broker there: quick tries first, then growing delays capped low.
                self.reporter.failed(kind);
                let pause = no_broker.next_delay();
                tracing::warn!(
                    %reason,
                    tries = no_broker.tries,
                    retry_in_ms = pause.as_millis() as u64,
                    "cannot open the stream: no broker there (restarting?)"
                );
                pause
            }
            Ended::Failed(kind, reason) => {
                self.reporter.failed(kind);
                let pause = backoff.next_delay();
                tracing::warn!(%reason, retry_in_ms = pause.as_millis() as u64, "cannot open the stream");
                pause
            }
        }
    }
}

/// The delays while no broker is there (refused connections, a proxy's 502,
/// 503, 504), since the last stream that opened:
/// [`QUICK_TRIES`] at [`QUICK_RETRY`], then doubling up to [`REFUSED_CAP`].
/// Refusals by a live broker (a token, `409`, a 5xx) and other failures back
/// off on the main schedule, up to [`CAP`].
struct NoBroker {
    tries: u32,
    backoff: Backoff,
}

impl NoBroker {
    fn new() -> NoBroker {
        NoBroker {
            tries: 0,
            backoff: Backoff::new(QUICK_RETRY * 2, REFUSED_CAP),
        }
    }

    fn next_delay(&mut self) -> Duration {
        self.tries += 1;
        if self.tries <= QUICK_TRIES {
            jitter(QUICK_RETRY, 0.2)
        } else {
            self.backoff.next_delay()
        }
    }
}

/// A task aborted when this is dropped (the handler's watch ends with the agent).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A URL for the logs: without a user name or password it may carry.
fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// A client error in one line with its causes (for calls to the broker only:
/// its URL is no secret, the handler's address stays out of the answers).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_tried_again_quickly_then_less_often() {
        let mut no_broker = NoBroker::new();
        for _ in 0..QUICK_TRIES {
            let delay = no_broker.next_delay();
            assert!(delay >= QUICK_RETRY && delay <= QUICK_RETRY.mul_f64(1.2));
        }
        let later: Vec<Duration> = (0..10).map(|_| no_broker.next_delay()).collect();
        assert!(later[0] >= QUICK_RETRY * 2);
        assert!(later.iter().all(|delay| *delay <= REFUSED_CAP));
        assert_eq!(later[9], REFUSED_CAP);
    }

    #[test]
    fn logged_urls_carry_no_credentials() {
        let url = reqwest::Url::parse("https://user:secret@handler.internal/jobs").unwrap();
        assert_eq!(super::redacted(&url), "https://handler.internal/jobs");
    }
}
