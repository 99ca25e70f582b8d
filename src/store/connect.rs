//! Connections: where they go ([`Target`]: a connection string with its TLS),
//! the query pool, and the dedicated sessions (LISTEN, the stream lock,
//! migrations, the start-up checks), with what each kind of session sets
//! when it starts ([`pool_setup`], [`Session::set_up_dedicated`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use super::sql::session::{
    BACKEND_PID, DEDICATED_SESSION_SETUP, POOLED_SESSION_SETUP, synchronous_commit,
};
use super::tls::{self, SslMode, TlsParams};

/// How long a new connection may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream of a connection, TLS or not.
pub type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// A connection string that cannot be used, in words naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Where connections go: the connection string of one variable (parsed, its
/// TLS parameters resolved and certificate files read), with the settings
/// every session shares: a connect timeout and TCP keepalives, so a silent
/// network cut is noticed in bounded time (about idle + interval * retries = 25 s).
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: MakeRustlsConnect,
    params: TlsParams,
    variable: &'static str,
}

impl Target {
    /// Parse `url`, the value of the variable named `variable` (named in
    /// every error; the URL itself never is: it may hold a password).
    /// `PGSSLMODE` & co. are read from the process environment.
    pub fn new(url: &str, variable: &'static str) -> Result<Target, TargetError> {
        Target::with_env(url, variable, &|name| std::env::var(name).ok())
    }

    pub fn with_env(
        url: &str,
        variable: &'static str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, TargetError> {
        let fail = |what: String| TargetError(format!("{variable}: {what}"));
        let (rest, found) = tls::split(url);
        let params = TlsParams::resolve(&found, env).map_err(fail)?;
        // tokio-postgres' causes name an option, a position or one character,
        // never a value.
        let mut config: Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            let cause = std::error::Error::source(&e).map_or(String::new(), |c| format!(": {c}"));
            fail(format!(
                "not a valid PostgreSQL connection URL ({e}{cause})"
            ))
        })?;
        config
            .ssl_mode(params.mode.for_tokio_postgres())
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        let tls = params.connector().map_err(fail)?;
        Ok(Target {
            config,
            tls,
            params,
            variable,
        })
    }

    /// The same target, with `name` as `application_name` unless the URL set one.
    pub fn named(&self, name: &str) -> Target {
        let mut target = self.clone();
        if target.config.get_application_name().is_none() {
            target.config.application_name(name);
        }
        target
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The variable this target was read from.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.params.mode
    }

    pub async fn connect(
        &self,
    ) -> Result<(Client, Connection<Socket, Stream>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }

    /// A failed connection in words: the variable, and what to change.
    pub fn explain(&self, error: &tokio_postgres::Error) -> String {
        format!(
            "{}: {}",
            self.variable,
            self.params.explain(&self.config, error)
        )
    }
}

/// The query pool. Connections are checked with `is_closed` on checkout, so a
/// connection whose backend was terminated is replaced rather than used.
/// `setup` (e.g. a `SET`) runs once on every new connection.
pub fn pool(target: &Target, size: usize, setup: Option<String>, own: Option<OwnBackends>) -> Pool {
    let target = target.named("backchannel");
    let manager = Manager::from_config(
        target.config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if setup.is_some() || own.is_some() {
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            let (setup, own) = (setup.clone(), own.clone());
            Box::pin(async move {
                if let Some(setup) = setup {
                    client
                        .batch_execute(&setup)
                        .await
                        .map_err(HookError::Backend)?;
                }
                if let Some(own) = own {
                    let row = client
                        .query_one(BACKEND_PID, &[])
                        .await
                        .map_err(HookError::Backend)?;
                    own.add(row.try_get(0).map_err(HookError::Backend)?);
                }
                Ok(())
            })
        }));
    }
    builder
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(10)),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(Duration::from_secs(5)),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .expect("pool builder with a runtime cannot fail")
}

/// What runs once on every new pooled connection: the settings of a pooled
/// session and `synchronous_commit` if set; nothing with `unnamed` (behind a
/// transaction pooler, a SET would reach other clients).
pub fn pool_setup(unnamed: bool, synchronous: Option<&str>) -> Option<String> {
    if unnamed {
        return None;
    }
    let mut setup = POOLED_SESSION_SETUP.to_owned();
    if let Some(more) = session_setup(synchronous) {
        setup.push_str("; ");
        setup.push_str(&more);
    }
    Some(setup)
}

/// The statement that applies `synchronous_commit` (a value the settings
/// accepted) to a new session, if set.
pub fn session_setup(synchronous: Option<&str>) -> Option<String> {
    synchronous.map(synchronous_commit)
}

/// The backends of this instance's pooled connections, by process id: a
/// notification one of them sent (a job this instance ended) needs no
/// reading back, since the instance woke its own waiters when the statement
/// returned. Not used behind a pooler, whose server connections serve every
/// client in turn.
///
/// A pid the server later gives to another client must not pass for ours
/// (that client's notifications would be missed here until the safety
/// re-check). Pids are only reused after the server's pid counter wraps
/// around, long after a backend exited; the set is emptied whenever the
/// LISTEN session reconnects (a restart ends every backend) and keeps the
/// newest pids only. A pid forgotten too early costs one read, nothing more.
#[derive(Debug, Clone, Default)]
pub struct OwnBackends(Arc<Mutex<(VecDeque<i32>, HashSet<i32>)>>);

/// Pids remembered at most: many times any pool size.
const OWN_BACKENDS: usize = 1024;

impl OwnBackends {
    pub(crate) fn add(&self, pid: i32) {
        let mut guard = self.0.lock().expect("own backends lock");
        let (order, pids) = &mut *guard;
        if pids.insert(pid) {
            order.push_back(pid);
        }
        if order.len() > OWN_BACKENDS {
            if let Some(old) = order.pop_front() {
                pids.remove(&old);
            }
        }
    }

    /// Forget every pid: what was heard before may not hold any more.
    pub fn clear(&self) {
        let mut guard = self.0.lock().expect("own backends lock");
        guard.0.clear();
        guard.1.clear();
    }

    /// Whether backend `pid` is (or recently was) one of ours.
    pub fn contains(&self, pid: i32) -> bool {
        self.0.lock().expect("own backends lock").1.contains(&pid)
    }
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
    pub async fn connect(target: &Target) -> Result<Session, tokio_postgres::Error> {
        let (client, connection) = target.connect().await?;
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

    /// Give this session the settings of every dedicated session: it sits
    /// idle for hours by design, and bounds its own statements.
    pub async fn set_up_dedicated(&self) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(DEDICATED_SESSION_SETUP).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_backends_keep_the_newest_pids_until_cleared() {
        let own = OwnBackends::default();
        own.add(7);
        own.add(7);
        assert!(own.contains(7));
        assert!(!own.contains(8));
        for pid in 1000..1000 + OWN_BACKENDS as i32 {
            own.add(pid);
        }
        assert!(!own.contains(7), "the oldest pid is forgotten first");
        assert!(own.contains(1000) && own.contains(999 + OWN_BACKENDS as i32));
        own.clear();
        assert!(!own.contains(1000));
    }

    #[test]
    fn session_setup_only_when_asked() {
        assert_eq!(session_setup(None), None);
        assert_eq!(
            session_setup(Some("off")).as_deref(),
            Some("SET synchronous_commit TO off")
        );
        assert_eq!(pool_setup(true, Some("off")), None);
    }

    fn refusal(url: &str) -> String {
        match Target::with_env(url, "DATABASE_URL", &|_| None) {
            Ok(_) => panic!("accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn refusals_name_the_variable_and_never_the_password() {
        for url in [
            "postgres://app:s3cret-pw@db:notaport/app",
            "postgres://app:s3cret-pw@db/app?sslcrl=/etc/crl.pem",
            "postgres://app:s3cret-pw@db/app?sslmode=verify-full",
            "host=db password=s3cret-pw sslmode=sometimes",
        ] {
            let message = refusal(url);
            assert!(message.starts_with("DATABASE_URL: "), "{message}");
            assert!(!message.contains("s3cret-pw"), "{message}");
        }
        let unknown = refusal("postgres://app@db/app?sslcrl=/etc/crl.pem");
        assert!(unknown.contains("sslcrl"), "{unknown}");
    }

    #[test]
    fn tokio_postgres_gets_the_nearest_mode_and_the_rest_of_the_url() {
        let target = Target::with_env(
            "postgres://app@db/app?sslmode=verify-ca&sslrootcert=/dev/null&application_name=x",
            "DATABASE_URL",
            &|_| None,
        );
        // /dev/null holds no certificate: refused when the connector is built.
        assert!(
            target
                .err()
                .unwrap()
                .to_string()
                .contains("no PEM certificate")
        );
        let target = Target::with_env(
            "postgres://app@db/app?sslmode=require&application_name=x",
            "DATABASE_URL",
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            target.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(target.config().get_application_name(), Some("x"));
        assert_eq!(
            target.named("other").config().get_application_name(),
            Some("x")
        );
    }
}
