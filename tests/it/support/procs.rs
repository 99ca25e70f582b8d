//! Real processes for fault tests: broker instances as child processes, and a
//! throwaway PostgreSQL cluster that a test may stop and restart on its own.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `backchannel serve` in a child process.
pub struct BrokerProcess {
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
    /// Its stderr lines, when spawned with `spawn_logged`.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl BrokerProcess {
    pub async fn spawn(database_url: &str, env: &[(&str, &str)]) -> BrokerProcess {
        Self::start(env!("CARGO_BIN_EXE_backchannel"), database_url, env, false).await
    }

    /// Like `spawn`, capturing the process's log lines (stderr).
    pub async fn spawn_logged(database_url: &str, env: &[(&str, &str)]) -> BrokerProcess {
        Self::start(env!("CARGO_BIN_EXE_backchannel"), database_url, env, true).await
    }

    /// Like `spawn`, with another build of `backchannel` (a previous release).
    pub async fn spawn_binary(
        binary: &std::path::Path,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        Self::start(
            binary.to_str().expect("a UTF-8 path"),
            database_url,
            env,
            true,
        )
        .await
    }

    async fn start(
        binary: &str,
        database_url: &str,
        env: &[(&str, &str)],
        capture: bool,
    ) -> BrokerProcess {
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("BACKCHANNEL_BIND", format!("127.0.0.1:{port}"))
            .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER)
            .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER)
            .env("BACKCHANNEL_POOL_SIZE", "4")
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        if capture {
            command.stderr(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawn backchannel serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let process = BrokerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            logs,
        };
        let client = process.client();
        let up = eventually(Duration::from_secs(20), || ready(&client)).await;
        assert!(up, "broker process on port {port} never became ready");
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The same client API as an in-process instance.
    pub fn client(&self) -> Instance {
        Instance::at(&self.base, self.http.clone())
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit; true if it did within `timeout`.
    pub async fn exited(&mut self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if self.child.try_wait().expect("try_wait").is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of the test's own: initdb into a temporary folder, a
/// free port, run as the unprivileged user `postgres` when the test runs as root.
/// The server is the newest one installed under /usr/lib/postgresql, or a
/// given major from scripts/pg-versions.sh (`start_major`).
pub struct TempCluster {
    dir: PathBuf,
    bindir: PathBuf,
    pub port: u16,
    as_postgres: bool,
    /// Server settings (`name=value`) added to the defaults.
    settings: Vec<String>,
}

fn pg_bindir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("an initdb")
}

/// The binaries of PostgreSQL `major` (13 to 18): `scripts/pg-versions.sh
/// bindir`, which fetches them the first time (pinned, checked) and prints
/// their folder.
fn major_bindir(major: u32) -> PathBuf {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-versions.sh");
    let output = Command::new(&script)
        .args(["bindir", &major.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} bindir {major} failed: {}",
        script.display(),
        output.status
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TempCluster {
    pub fn start() -> TempCluster {
        TempCluster::start_with(&[])
    }

    /// A started cluster with server settings (`name=value`) of the test's own.
    pub fn start_with(settings: &[&str]) -> TempCluster {
        let cluster = TempCluster::init_with(settings);
        cluster.start_again();
        cluster
    }

    /// A started cluster of PostgreSQL `major` (13 to 18, the binaries of
    /// scripts/pg-versions.sh) with server settings (`name=value`) of the
    /// test's own, e.g. PostgreSQL 17's `max_notify_queue_pages`.
    pub fn start_major(major: u32, settings: &[&str]) -> TempCluster {
        let cluster = TempCluster::init_in(major_bindir(major), settings);
        cluster.start_again();
        cluster
    }

    /// A cluster initialised but not started: configure it, then `start_again`.
    pub fn init() -> TempCluster {
        TempCluster::init_with(&[])
    }

    fn init_with(settings: &[&str]) -> TempCluster {
        TempCluster::init_in(pg_bindir(), settings)
    }

    fn init_in(bindir: PathBuf, settings: &[&str]) -> TempCluster {
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("bc-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(&dir));
        }
        let cluster = TempCluster {
            bindir,
            port: free_port(),
            dir,
            as_postgres,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The cluster's own folder (its socket is there; files for it may go there).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Write `name` into the cluster's folder, readable by the server only.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_postgres {
            run(Command::new("chown").arg("postgres").arg(&path));
        }
        path
    }

    /// Add lines to postgresql.conf and, if given, replace pg_hba.conf
    /// (before `start_again`, or followed by a restart).
    pub fn configure(&self, conf: &str, hba: Option<&str>) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .unwrap();
        writeln!(file, "\n{conf}").unwrap();
        if let Some(hba) = hba {
            std::fs::write(self.data().join("pg_hba.conf"), hba).unwrap();
        }
    }

    /// A key=value connection string over the cluster's Unix socket (which
    /// pg_hba.conf's `local` lines govern), for set-up when TCP needs TLS.
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database}",
            self.dir.display(),
            self.port
        )
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let program = self.bindir.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run(&mut command);
    }

    /// Start (again) and wait until it accepts connections.
    pub fn start_again(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        for setting in &self.settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = self.dir.join("log");
        self.pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stop with fast shutdown: sessions are terminated, like a real restart.
    pub fn stop(&self) {
        self.pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Create a database in this cluster and return its URL.
    pub async fn database(&self, name: &str) -> String {
        let admin = connect(&self.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(name)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new(self.bindir.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.as_postgres {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bindir.join("pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}
