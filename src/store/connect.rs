//! Connections: their shared settings, the query pool, and the dedicated
//! sessions (LISTEN, the stream lock, migrations).

use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};
use tokio_util::sync::CancellationToken;

/// How long a new connection may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Parse a URL into a connection config with the settings every session shares:
/// a connect timeout and TCP keepalives, so a silent network cut is noticed in
/// bounded time (about idle + interval * retries = 25 s).
pub fn config(url: &str, application_name: &str) -> Result<Config, tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    Ok(config)
}

/// The query pool. Connections are checked with `is_closed` on checkout, so a
/// connection whose backend was terminated is replaced rather than used.
/// `setup` (e.g. a `SET`) runs once on every new connection.
pub fn pool(url: &str, size: usize, setup: Option<String>) -> Result<Pool, tokio_postgres::Error> {
    let config = config(url, "backchannel")?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if let Some(setup) = setup {
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            let setup = setup.clone();
            Box::pin(async move {
                client
                    .batch_execute(&setup)
                    .await
                    .map_err(HookError::Backend)
            })
        }));
    }
    let pool = builder
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(10)),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(Duration::from_secs(5)),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .expect("pool builder with a runtime cannot fail");
    Ok(pool)
}

/// A session of its own, outside the pool, that lives and dies with its owner.
/// Dropping it closes the connection (and with it any session advisory lock).
pub struct Session {
    pub client: Client,
    driver: JoinHandle<()>,
    gone: CancellationToken,
}

impl Session {
    /// Connect and drive the connection on a task; notifications are ignored.
    pub async fn connect(config: &Config) -> Result<Session, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let gone = CancellationToken::new();
        let on_end = gone.clone().drop_guard();
        let driver = tokio::spawn(async move {
            let _on_end = on_end;
            if let Err(error) = connection.await {
                tracing::debug!(%error, "dedicated session ended");
            }
        });
        Ok(Session {
            client,
            driver,
            gone,
        })
    }

    /// Resolves when the connection is gone (closed by us, the server or the network).
    pub async fn closed(&self) {
        self.gone.cancelled().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
