//! `Type=notify`: the broker tells systemd `READY=1` on `NOTIFY_SOCKET` once
//! its start-up checks passed and it answers `/healthz`, never for a start
//! that fails; `RELOADING=1` then `READY=1` around a SIGHUP; `STOPPING=1` at
//! shutdown. The socket here is a real datagram socket, as systemd's.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::support::files::TempDir;
use crate::support::procs::free_port;
use crate::support::*;

/// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    _dir: TempDir,
    path: String,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = TempDir::new("notify");
        let path = dir.path().join("notify.sock").to_str().unwrap().to_owned();
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            _dir: dir,
            path,
            socket,
        }
    }

    /// The next message, or `None` after `timeout`.
    async fn next(&self, timeout: Duration) -> Option<String> {
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(timeout, self.socket.recv(&mut buffer))
            .await
            .ok()?
            .unwrap();
        Some(String::from_utf8_lossy(&buffer[..n]).into_owned())
    }
}

fn serve(database_url: &str, port: u16, notify: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_backchannel"))
        .arg("serve")
        .env("NOTIFY_SOCKET", notify)
        .env("DATABASE_URL", database_url)
        .env("BACKCHANNEL_BIND", format!("127.0.0.1:{port}"))
        .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER)
        .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER)
        .env("BACKCHANNEL_POOL_SIZE", "2")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Wait for `child` to exit; its exit code.
async fn exit_code(child: &mut Child) -> Option<i32> {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the process never exited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ready_comes_once_healthz_answers_and_stopping_at_shutdown() {
    let db = TestDb::new().await;
    let notify = NotifySocket::bind();
    let port = free_port();
    let mut child = serve(&db.url, port, &notify.path);
    let http = reqwest::Client::new();
    let healthz = format!("http://127.0.0.1:{port}/healthz");

    let first = notify
        .next(Duration::from_secs(30))
        .await
        .expect("a message");
    assert!(first.starts_with("READY=1\n"), "{first}");
    assert!(
        first.contains(&format!("STATUS=serving on 127.0.0.1:{port}")),
        "{first}"
    );
    // At READY=1 the server already answers: no retry here.
    let r = http
        .get(&healthz)
        .send()
        .await
        .expect("/healthz answers at READY=1");
    assert_eq!(r.status(), 200);

    // A reload: RELOADING=1, then READY=1 again.
    signal(&child, "HUP");
    let reloading = notify.next(LONG).await.expect("RELOADING=1");
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    let reloaded = notify.next(LONG).await.expect("READY=1 after the reload");
    assert!(
        reloaded.starts_with("READY=1\n") && reloaded.contains("tokens reloaded"),
        "{reloaded}"
    );

    signal(&child, "TERM");
    let stopping = notify.next(LONG).await.expect("STOPPING=1");
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test]
async fn a_start_that_fails_never_says_ready() {
    let notify = NotifySocket::bind();
    let refused = format!("postgres://nobody@127.0.0.1:{}/nothing", free_port());
    let mut child = serve(&refused, free_port(), &notify.path);
    assert_eq!(exit_code(&mut child).await, Some(1));
    // The process is gone, and a datagram is queued at the receiver when it
    // is sent: nothing waiting now means nothing was sent.
    let mut buffer = [0u8; 512];
    match notify.socket.try_recv(&mut buffer) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "a failed start sent something: {:?}",
            other.map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
        ),
    }
}
