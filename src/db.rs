//! Connections: the query pool and the dedicated sessions (LISTEN, stream lock).

use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

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
    pub driver: Driver,
}

/// The task driving a session's connection.
pub struct Driver(Option<JoinHandle<()>>);

impl Session {
    /// Connect and drive the connection on a task; notifications are ignored.
    pub async fn connect(config: &Config) -> Result<Session, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "dedicated session ended");
            }
        });
        Ok(Session {
            client,
            driver: Driver(Some(driver)),
        })
    }
}

impl Driver {
    /// Resolves when the connection is gone (closed by us, the server or the network).
    pub async fn closed(&mut self) {
        if let Some(driver) = self.0.as_mut() {
            let _ = driver.await;
            self.0 = None;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(driver) = &self.0 {
            driver.abort();
        }
    }
}
