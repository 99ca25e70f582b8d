//! One fresh database per test, dropped afterwards.

use std::sync::OnceLock;

use tokio_postgres::NoTls;

/// Where tests may create databases (a superuser or a role with CREATEDB).
pub fn admin_url() -> String {
    std::env::var("BACKCHANNEL_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// (host, port) of the test server (the admin URL's).
pub fn admin_server() -> (String, u16) {
    let config: tokio_postgres::Config = admin_url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("a TCP host: {other:?}"),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// The server's `server_version_num` (e.g. 130023 for 13.23).
pub async fn server_version(client: &tokio_postgres::Client) -> i32 {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("server_version_num");
    row.get(0)
}

/// The admin URL with another database name.
pub fn url_for(database: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin.rsplit_once('/').expect("admin URL has a database");
    format!("{base}/{database}")
}

pub fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        init_tracing();
        let name = format!("bc_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = url_for(&name);
        TestDb { name, url }
    }

    /// Sessions of this database waiting for a lock right now.
    pub async fn lock_waits(&self) -> i64 {
        self.client()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Another session locks job `id`'s row (`FOR UPDATE`) and holds it until
    /// it sends `ROLLBACK`: a statement on that row waits.
    pub async fn lock_row(&self, id: i64) -> tokio_postgres::Client {
        let client = self.client().await;
        client
            .batch_execute(&format!(
                "BEGIN; SELECT 1 FROM backchannel.jobs WHERE id = {id} FOR UPDATE"
            ))
            .await
            .unwrap();
        client
    }

    /// Another session locks the jobs table against writes (`SHARE` mode)
    /// until it sends `ROLLBACK`: every write to it waits, whatever its row
    /// (a batch the broker cannot skip, unlike a locked row).
    pub async fn lock_table(&self) -> tokio_postgres::Client {
        let client = self.client().await;
        client
            .batch_execute("BEGIN; LOCK TABLE backchannel.jobs IN SHARE MODE")
            .await
            .unwrap();
        client
    }

    /// A plain connection to the test database (for assertions and SQL clients).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    pub async fn count_jobs(&self) -> i64 {
        let client = self.client().await;
        let row = client
            .query_one("SELECT count(*) FROM backchannel.jobs", &[])
            .await
            .expect("count jobs");
        row.get(0)
    }

    /// Connections open on this database right now (other than `exclude_pid`).
    pub async fn connections(&self, client: &tokio_postgres::Client) -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("count connections")
            .get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        as_admin_on_drop(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Run `statement` as the admin user from a `Drop` (which may run inside the
/// test's runtime): on a thread and runtime of its own, waiting for it, and
/// ignoring failure (the cleanup of a test that already failed).
pub fn as_admin_on_drop(statement: String) {
    let dropper = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), NoTls).await {
                tokio::spawn(conn);
                let _ = client.batch_execute(&statement).await;
            }
        });
    });
    let _ = dropper.join();
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A plain `LISTEN` session, as an SQL client of the contract would hold it.
pub struct Notifications {
    _client: tokio_postgres::Client,
    /// Each notification's payload and sending backend's pid.
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, i32)>,
}

impl Notifications {
    /// `LISTEN channel` on the database at `url`.
    pub async fn listen(url: &str, channel: &str) -> Notifications {
        use futures_util::StreamExt;
        let (client, mut connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("connect to postgres");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let _ = tx.send((n.payload().to_owned(), n.process_id()));
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .expect("LISTEN");
        Notifications {
            _client: client,
            rx,
        }
    }

    /// Wait up to `timeout` for a notification with this payload.
    pub async fn received(&mut self, payload: &str, timeout: std::time::Duration) -> bool {
        self.sender_of(payload, timeout).await.is_some()
    }

    /// Wait up to `timeout` for a notification with this payload; the pid of
    /// the backend that sent it.
    pub async fn sender_of(&mut self, payload: &str, timeout: std::time::Duration) -> Option<i32> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some((got, sender))) if got == payload => return Some(sender),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }
}
