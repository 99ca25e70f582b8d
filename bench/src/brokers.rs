//! Broker instances as child processes (`backchannel serve`), so that each has
//! its own memory and CPU to measure and the load generator runs apart from it.
//!
//! A child never outlives the bench: dropping a `Broker` kills it (a panic or
//! ctrl-c unwinds through that), and the kernel kills it if the bench dies
//! without unwinding (`PR_SET_PDEATHSIG`).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use backchannel::config::WakeMode;

pub const SUBMITTER_TOKEN: &str = "bench-submitter-token-0000000000";
pub const LISTENER_TOKEN: &str = "bench-listener-token-00000000000";

/// How to start an instance.
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub binary: PathBuf,
    pub database_url: String,
    /// The query pool's URL when it goes through a pooler (`--pooler`);
    /// `database_url` is then the dedicated sessions' URL.
    pub pooled_url: Option<String>,
    pub wake: WakeMode,
    pub poll_interval_ms: u64,
    pub pool_size: usize,
    /// Forwarding to the stream's holder (docs/scaling.md): a cluster secret
    /// and the loopback as the peers. Off: every instance does its own work.
    pub forwarding: bool,
}

/// The bench cluster's secret (forwarding on).
const CLUSTER_SECRET: &str = "bench-cluster-secret-000000000000000";

/// One running instance.
pub struct Broker {
    child: Child,
    pub pid: u32,
    pub url: String,
}

/// The instances of one scenario.
pub struct Cluster {
    pub brokers: Vec<Broker>,
}

/// A free port on the loopback interface (free now; the child binds it next).
fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(probe.local_addr()?)
}

impl Broker {
    async fn start(spec: &BrokerSpec, index: usize) -> anyhow::Result<Broker> {
        let addr = free_port()?;
        let wake = match spec.wake {
            WakeMode::Notify => "notify",
            WakeMode::Poll => "poll",
        };
        let mut command = Command::new(&spec.binary);
        if spec.pooled_url.is_some() {
            // The pool goes through a pooler; the sessions go straight.
            command.env("BACKCHANNEL_DIRECT_DATABASE_URL", &spec.database_url);
        } else {
            command.env_remove("BACKCHANNEL_DIRECT_DATABASE_URL");
        }
        command
            .env_remove("BACKCHANNEL_CLUSTER_SECRET_FILE")
            .env_remove("BACKCHANNEL_ADVERTISE_URL");
        if spec.forwarding {
            command
                .env("BACKCHANNEL_CLUSTER_SECRET", CLUSTER_SECRET)
                .env("BACKCHANNEL_PEERS", "127.0.0.1");
        } else {
            command
                .env_remove("BACKCHANNEL_CLUSTER_SECRET")
                .env_remove("BACKCHANNEL_PEERS");
        }
        command
            .arg("serve")
            .env(
                "DATABASE_URL",
                spec.pooled_url.as_ref().unwrap_or(&spec.database_url),
            )
            .env("BACKCHANNEL_BIND", addr.to_string())
            .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER_TOKEN)
            .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER_TOKEN)
            .env("BACKCHANNEL_POOL_SIZE", spec.pool_size.to_string())
            .env("BACKCHANNEL_WAKE", wake)
            .env(
                "BACKCHANNEL_POLL_INTERVAL_MS",
                spec.poll_interval_ms.to_string(),
            )
            .env("BACKCHANNEL_INSTANCE_ID", format!("bench-{index}"))
            .env("BACKCHANNEL_SHUTDOWN_GRACE", "5")
            // The idle scenarios hold up to PER_PROCESS requests per instance,
            // more than the default limit.
            .env(
                "BACKCHANNEL_MAX_WAITING",
                (super::holder::PER_PROCESS + 1_000).to_string(),
            )
            .env(
                "RUST_LOG",
                std::env::var("BENCH_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", spec.binary.display()))?;
        let pid = child.id().context("the broker exited at once")?;
        Ok(Broker {
            child,
            pid,
            url: format!("http://{addr}"),
        })
    }

    /// Wait until `/readyz` answers 200 (database reachable, LISTEN up).
    async fn ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("broker {} exited before it was ready: {status}", self.url);
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("broker {} was not ready within 20 s", self.url);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, then wait for a graceful exit (SIGKILL after `patience`).
    async fn stop(mut self, patience: Duration) -> anyhow::Result<()> {
        // SAFETY: kill only sends a signal to our own child.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        match tokio::time::timeout(patience, self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "broker {} did not stop within {patience:?} of SIGTERM; killed",
                    self.url
                )
            }
        }
    }
}

impl Cluster {
    /// Start `count` instances in parallel and wait until all are ready.
    pub async fn start(spec: &BrokerSpec, count: usize) -> anyhow::Result<Cluster> {
        let mut brokers = Vec::with_capacity(count);
        for index in 0..count {
            brokers.push(Broker::start(spec, index).await?);
        }
        let client = reqwest::Client::new();
        let readiness = brokers.iter_mut().map(|b| b.ready(&client));
        for outcome in futures_util::future::join_all(readiness).await {
            outcome?;
        }
        Ok(Cluster { brokers })
    }

    pub fn urls(&self) -> Vec<String> {
        self.brokers.iter().map(|b| b.url.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.brokers.iter().map(|b| b.pid).collect()
    }

    /// Stop every instance gracefully (in parallel).
    pub async fn stop(self) -> anyhow::Result<()> {
        let stops = self
            .brokers
            .into_iter()
            .map(|b| b.stop(Duration::from_secs(15)));
        for outcome in futures_util::future::join_all(stops).await {
            outcome?;
        }
        Ok(())
    }
}
