//! A real PgBouncer (the `pgbouncer` program, Debian's package) in
//! transaction (or session) mode, in front of a server of the test's own.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::procs::free_port;

/// Whether the `pgbouncer` program is installed. `.ci/run` installs it; a
/// developer machine may not have it, and the tests that need it say so.
pub fn installed() -> bool {
    pgbouncer_program().is_some()
}

fn pgbouncer_program() -> Option<PathBuf> {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// PgBouncer must be installed (`make test` installs it): a test that needs
/// it fails without it, never skips.
pub fn required() -> bool {
    assert!(
        installed(),
        "pgbouncer is not installed (apt-get install pgbouncer; make test does as root)"
    );
    true
}

/// A PgBouncer process, killed on drop.
pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl PgBouncer {
    /// Transaction pooling with few server connections (so that clients
    /// share them), forwarding every database name to `127.0.0.1:server_port`,
    /// trusting every user.
    pub fn start(server_port: u16) -> PgBouncer {
        PgBouncer::start_in("transaction", 2, server_port)
    }

    /// Session pooling with at most `servers` server connections per
    /// database: one serves one client for as long as it stays connected,
    /// then (after `DISCARD ALL`) the next one, before any new is opened.
    pub fn start_session(servers: usize, server_port: u16) -> PgBouncer {
        PgBouncer::start_in("session", servers, server_port)
    }

    fn start_in(pool_mode: &str, servers: usize, server_port: u16) -> PgBouncer {
        use std::os::unix::process::CommandExt;
        let program = pgbouncer_program().expect("pgbouncer is installed");
        let dir = std::env::temp_dir().join(format!("bc-pgb-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let ini = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = {servers}\n\
             max_client_conn = 100\n\
             server_login_retry = 1\n\
             query_wait_timeout = 2\n\
             server_connect_timeout = 5\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let mut command = Command::new(program);
        command
            .arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // PgBouncer refuses to run as root.
        if let (Some(uid), Some(gid)) = (id_of("-u"), id_of("-g")) {
            if id_of_self() == Some(0) {
                let status = Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(&dir)
                    .status()
                    .unwrap();
                assert!(status.success());
                command.uid(uid).gid(gid);
            }
        }
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = PgBouncer { port, dir, child };
        let up = (0..250).any(|_| {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
            false
        });
        assert!(up, "pgbouncer listens on {port}");
        bouncer
    }

    /// The URL of `database` through this PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

fn id_of_self() -> Option<u32> {
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
