//! Telling systemd how the broker is doing (`Type=notify`): `READY=1` once
//! the start-up checks passed and the server listens, `RELOADING=1` and
//! `READY=1` around a SIGHUP reload, `STOPPING=1` at shutdown, with a
//! `STATUS=` line for `systemctl status`. A few lines over a Unix datagram
//! socket (the protocol of `sd_notify(3)`), rather than a crate: the socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace),
//! one datagram of `KEY=value` lines per message.
//!
//! Without `NOTIFY_SOCKET` (not under systemd, or not `Type=notify`) nothing
//! is sent. A message that cannot be sent is logged once at warn level and
//! changes nothing else: the broker serves whether or not systemd listens.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the notifications go; clones share the socket.
#[derive(Clone, Default)]
pub struct Notifier(Option<Arc<Socket>>);

struct Socket {
    socket: UnixDatagram,
    address: SocketAddr,
    /// Whether a failure was logged already.
    warned: AtomicBool,
}

impl Notifier {
    /// No notifications (in-process instances, tests).
    pub fn disabled() -> Notifier {
        Notifier(None)
    }

    /// The socket of `NOTIFY_SOCKET`, if set and usable.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) => Notifier::at(&path.to_string_lossy()),
            None => Notifier::disabled(),
        }
    }

    /// The socket at `path` (`@name`: the abstract namespace).
    pub fn at(path: &str) -> Notifier {
        let address = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        } else if path.starts_with('/') {
            SocketAddr::from_pathname(path)
        } else {
            tracing::warn!(
                "NOTIFY_SOCKET is neither a path nor an abstract socket name; systemd will not \
                 be told when the broker is ready"
            );
            return Notifier::disabled();
        };
        let opened = address.and_then(|address| Ok((UnixDatagram::unbound()?, address)));
        match opened {
            Ok((socket, address)) => Notifier(Some(Arc::new(Socket {
                socket,
                address,
                warned: AtomicBool::new(false),
            }))),
            Err(error) => {
                tracing::warn!(%error, "cannot use NOTIFY_SOCKET; systemd will not be told");
                Notifier::disabled()
            }
        }
    }

    /// Start-up done: the checks passed and the server listens.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload (SIGHUP) begins.
    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=reloading the token files");
    }

    /// A reload ended (applied or refused): serving as before.
    pub fn reloaded(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// Shutdown begins.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down");
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.0 else {
            return;
        };
        if let Err(error) = socket
            .socket
            .send_to_addr(message.as_bytes(), &socket.address)
        {
            if !socket.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)");
            }
        }
    }
}

/// A status on one line: a newline would start another `KEY=value`.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams_of_lines() {
        let dir = std::env::temp_dir().join(format!("bc-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::at(path.to_str().unwrap());
        notifier.ready("listening\non 127.0.0.1:8080");
        notifier.stopping();
        let mut buffer = [0u8; 256];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..n]).unwrap(),
            "READY=1\nSTATUS=listening on 127.0.0.1:8080"
        );
        let n = receiver.recv(&mut buffer).unwrap();
        assert!(buffer[..n].starts_with(b"STOPPING=1\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_names_work_and_nothing_is_sent_without_a_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("bc-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::at(&format!("@{name}")).reloading();
        let mut buffer = [0u8; 256];
        let n = receiver.recv(&mut buffer).unwrap();
        assert!(buffer[..n].starts_with(b"RELOADING=1\n"));
        Notifier::disabled().ready("nothing happens");
        Notifier::at("relative/path").ready("nothing happens either");
    }
}
