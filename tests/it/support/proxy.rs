//! A TCP proxy in front of a PostgreSQL (or PgBouncer) port that can cut the
//! connections of one `application_name`, read from each connection's startup
//! message: a way to close some of a broker's connections (its pooled ones,
//! say) from outside, leaving the others up.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// How much of what a client sends first is kept to tell its name: the
/// startup message (after an `SSLRequest`) is well within it.
const PREFIX: usize = 4096;

struct Link {
    first_bytes: Arc<Mutex<Vec<u8>>>,
    task: AbortHandle,
}

/// A proxy listening on a port of its own; stops (and cuts everything) on drop.
pub struct Proxy {
    pub port: u16,
    links: Arc<Mutex<Vec<Link>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Forward every connection to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links: Arc<Mutex<Vec<Link>>> = Arc::default();
        let accepted = links.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let first_bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
                let task = tokio::spawn(relay(client, server, first_bytes.clone()));
                accepted.lock().unwrap().push(Link {
                    first_bytes,
                    task: task.abort_handle(),
                });
            }
        });
        Proxy {
            port,
            links,
            accept,
        }
    }

    /// Close both ends of every connection whose startup message names
    /// `application_name` exactly; how many were cut.
    pub fn cut(&self, application_name: &str) -> usize {
        let wanted = [
            b"application_name\0".as_slice(),
            application_name.as_bytes(),
            b"\0",
        ]
        .concat();
        let mut cut = 0;
        self.links.lock().unwrap().retain(|link| {
            let named = link
                .first_bytes
                .lock()
                .unwrap()
                .windows(wanted.len())
                .any(|window| window == wanted);
            if named && !link.task.is_finished() {
                link.task.abort();
                cut += 1;
            }
            !named
        });
        cut
    }
}

/// Copy both ways until either side closes; dropping the task (when cut)
/// closes both sockets.
async fn relay(client: TcpStream, server: TcpStream, first_bytes: Arc<Mutex<Vec<u8>>>) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_in.read(&mut buf).await?;
            if n == 0 {
                return server_out.shutdown().await;
            }
            {
                let mut kept = first_bytes.lock().unwrap();
                let room = PREFIX.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
            server_out.write_all(&buf[..n]).await?;
        }
    };
    let down = tokio::io::copy(&mut server_in, &mut client_out);
    let _: std::io::Result<_> = tokio::select! {
        result = up => result.map(|_| ()),
        result = down => result.map(|_| ()),
    };
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.task.abort();
        }
    }
}
