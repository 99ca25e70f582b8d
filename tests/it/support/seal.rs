//! Sealed jobs (docs/sealed.md): key files in a folder of the test's own,
//! sealed submit bodies, and `backchannel agent` as a child process with its
//! sealing flags, its health listener and its log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use backchannel::seal::{
    Algorithm, AnswerKey, KeyFile, RecipientPublic, Sealer, SigningKey, unix_now, write_new_pair,
};
use serde_json::{Value, json};

use crate::support::procs::free_port;
use crate::support::*;

/// Castellum's X25519 pair and the scheduler's Ed25519 pair, as
/// `backchannel keys new` writes them, in a folder removed on drop.
pub struct SealKeys {
    pub dir: PathBuf,
    /// castellum.key / castellum.pub
    pub castellum: PathBuf,
    /// scheduler.key / scheduler.pub
    pub scheduler: PathBuf,
}

impl SealKeys {
    pub fn new() -> SealKeys {
        let dir = std::env::temp_dir().join(format!("bc-seal-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = SealKeys {
            castellum: dir.join("castellum"),
            scheduler: dir.join("scheduler"),
            dir,
        };
        keys.pair("castellum", Algorithm::X25519);
        keys.pair("scheduler", Algorithm::Ed25519);
        keys
    }

    /// Another pair `name.key` / `name.pub` in the folder; its prefix.
    pub fn pair(&self, name: &str, algorithm: Algorithm) -> PathBuf {
        let prefix = self.dir.join(name);
        write_new_pair(algorithm, &prefix).expect("write a key pair");
        prefix
    }

    /// The scheduler's sealer, to castellum's key.
    pub fn sealer(&self) -> Sealer {
        sealer(&self.scheduler, &self.castellum)
    }

    /// The agent's flags for these keys.
    pub fn agent_flags(&self) -> Vec<String> {
        vec![
            "--open-with".into(),
            file(&self.castellum, "key"),
            "--trust-signer".into(),
            file(&self.scheduler, "pub"),
        ]
    }
}

impl Drop for SealKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `prefix.extension` as a string.
pub fn file(prefix: &Path, extension: &str) -> String {
    format!("{}.{extension}", prefix.display())
}

/// A sealer signing with `signer.key`, sealing to `recipient.pub`.
pub fn sealer(signer: &Path, recipient: &Path) -> Sealer {
    Sealer::new(
        SigningKey::read(Path::new(&file(signer, "key"))).unwrap(),
        RecipientPublic::read(Path::new(&file(recipient, "pub"))).unwrap(),
    )
}

/// The key id of a key file.
pub fn kid(path: &str) -> String {
    KeyFile::read(Path::new(path)).unwrap().kid().to_string()
}

/// A submit body sealing `payload` for `kind` (timeout 30 s, sealed at
/// `now`), its ref as the idempotency key; and the key to its answer.
pub fn sealed_at(sealer: &Sealer, kind: &str, payload: &Value, now: u64) -> (Value, AnswerKey) {
    let sealed = sealer
        .seal(kind, payload, Duration::from_secs(30), now)
        .expect("seal");
    let body = json!({
        "kind": kind,
        "payload": sealed.envelope,
        "timeout": 30,
        "idempotency_key": sealed.reference,
    });
    (body, sealed.answer_key)
}

/// As [`sealed_at`], sealed now.
pub fn sealed(sealer: &Sealer, kind: &str, payload: &Value) -> (Value, AnswerKey) {
    sealed_at(sealer, kind, payload, unix_now())
}

/// `backchannel agent` as a child process, forwarding to `forward`, with a
/// health listener (for its metrics) and its log (info) in a file.
pub struct AgentProcess {
    pub child: tokio::process::Child,
    pub health: String,
    pub log: PathBuf,
    http: reqwest::Client,
}

impl AgentProcess {
    /// Start it and wait until it holds the stream of `bc`.
    pub async fn start(bc: &Instance, forward: &str, extra: &[String]) -> AgentProcess {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("bc-agent-{}.log", uuid::Uuid::new_v4()));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"));
        for (name, _) in std::env::vars() {
            if name.starts_with("BACKCHANNEL_") {
                command.env_remove(name);
            }
        }
        command
            .arg("agent")
            .args(["--server", &bc.base, "--forward", forward])
            .args(["--health-bind", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("BACKCHANNEL_LISTENER_TOKEN", LISTENER)
            .env("BACKCHANNEL_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let mut agent = AgentProcess {
            child: command.spawn().expect("start the agent binary"),
            health: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        };
        let held = eventually(Duration::from_secs(20), || async {
            bc.send(bc.http.get(bc.url("/v1/listener")).bearer_auth(SUBMITTER))
                .await
                .body["held"]
                == true
        })
        .await;
        if !held {
            let exited = agent.child.try_wait().ok().flatten();
            panic!(
                "the agent never held the stream (exited: {exited:?}); its log:\n{}",
                agent.log()
            );
        }
        agent
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> String {
        match self
            .http
            .get(format!("{}/metrics", self.health))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// One sample of its metrics (0 when absent).
    pub async fn sample(&self, series: &str) -> f64 {
        sample(&self.metrics().await, series).unwrap_or(0.0)
    }

    /// Wait until the sample `series` is `value`; false after `timeout`.
    pub async fn sample_is(&self, series: &str, value: f64, timeout: Duration) -> bool {
        eventually(timeout, || async { self.sample(series).await == value }).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the agent runs").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
