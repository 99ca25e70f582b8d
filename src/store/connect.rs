//! Connections: where they go ([`Target`]: a connection string with its TLS),
//! the query pool, and the dedicated sessions (LISTEN, the stream lock,
//! migrations, the start-up checks), with what each kind of session sets
//! when it starts ([`pool_setup`], [`Session::set_up_dedicated`]).

use std::time::Duration;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts,
};
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use super::conninfo::{self, config::Explicit};
use super::pooler::Naming;
use super::sql::session::{DEDICATED_SESSION_SETUP, POOLED_SESSION_SETUP, synchronous_commit};
use super::tls::{SslMode, TlsParams};

/// How long a new connection may take before it counts as unreachable
/// (per host), unless the string sets `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalives, unless the string sets them: an idle connection whose
/// peer vanished (a cut, a NAT that forgot it) is noticed after
/// idle + interval * count = 25 s.
pub const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
pub const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVES_COUNT: u32 = 3;

/// Linux's own keepalive interval and count, for a string that leaves them
/// to the system (`keepalives_interval=0`).
const SYSTEM_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(75);
const SYSTEM_KEEPALIVES_COUNT: u32 = 9;

/// The stream of a connection, TLS or not.
pub type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// A connection string that cannot be used, in words naming its variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Where connections go: the connection string of one variable (read once,
/// as libpq reads it, by [`conninfo`]; its TLS parameters resolved and
/// certificate files read), with what every session shares unless the
/// string says otherwise: a connect timeout, TCP keepalives and
/// `TCP_USER_TIMEOUT` ([`tcp_user_timeout`]), so that a silent network cut
/// is noticed in bounded time, idle or mid-statement.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: MakeRustlsConnect,
    params: TlsParams,
    variable: &'static str,
}

impl Target {
    /// Read `url`, the value of the variable named `variable` (named in
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
        let pairs = conninfo::parse(url)
            .map_err(|e| fail(format!("not a valid PostgreSQL connection string ({e})")))?;
        let (mut config, explicit) = conninfo::config::config(&pairs).map_err(fail)?;
        let params = TlsParams::resolve(&pairs, env).map_err(fail)?;
        config.ssl_mode(params.mode.for_tokio_postgres());
        apply_defaults(&mut config, explicit);
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

/// The broker's defaults, each only where the string did not set it.
fn apply_defaults(config: &mut Config, explicit: Explicit) {
    if !explicit.connect_timeout {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if !explicit.keepalives {
        config.keepalives(true);
    }
    if !explicit.keepalives_idle {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if !explicit.keepalives_interval {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if !explicit.keepalives_count {
        config.keepalives_retries(KEEPALIVES_COUNT);
    }
    if !explicit.tcp_user_timeout {
        config.tcp_user_timeout(tcp_user_timeout(config));
    }
}

/// `TCP_USER_TIMEOUT` for a config whose string did not set one: how long
/// data sent may stay unacknowledged before the kernel drops the
/// connection. Keepalives only probe an idle connection: without this, a
/// peer that goes silent while a statement or its answer is in flight
/// holds the connection (and the loop or request on it) for the kernel's
/// ~15 minutes of retransmissions.
///
/// It is the keepalive schedule's own bound, idle + interval * count (25 s
/// with the broker's keepalives). On Linux, with keepalives on, the user
/// timeout also decides when unanswered probes end the connection: equal
/// to their schedule, it ends an idle connection when the keepalives alone
/// would, neither earlier (a string's longer keepalives are kept) nor
/// later. With keepalives off, the broker's 25 s.
pub fn tcp_user_timeout(config: &Config) -> Duration {
    if !config.get_keepalives() {
        return KEEPALIVES_IDLE + KEEPALIVES_INTERVAL * KEEPALIVES_COUNT;
    }
    let interval = config
        .get_keepalives_interval()
        .unwrap_or(SYSTEM_KEEPALIVES_INTERVAL);
    let count = config
        .get_keepalives_retries()
        .unwrap_or(SYSTEM_KEEPALIVES_COUNT);
    config.get_keepalives_idle() + interval * count
}

/// How long the pool waits for a new connection: the connect timeout once
/// per host tried (libpq's `connect_timeout` is per host), or without bound
/// when the string asks for none (`connect_timeout=0`).
fn create_timeout(config: &Config) -> Option<Duration> {
    let hosts = config
        .get_hosts()
        .len()
        .max(config.get_hostaddrs().len())
        .max(1);
    config
        .get_connect_timeout()
        .map(|timeout| *timeout * hosts as u32)
}

/// The query pool. Connections are checked with `is_closed` on checkout, so a
/// connection whose backend was terminated is replaced rather than used.
/// `setup` (e.g. a `SET`) runs once on every new connection, unless `naming`
/// is unnamed by then (the pool switched behind a transaction pooler, where
/// a session setting would reach the pooler's other clients).
pub fn pool(target: &Target, size: usize, setup: Option<String>, naming: &Naming) -> Pool {
    let target = target.named("backchannel");
    let create = create_timeout(&target.config);
    let manager = Manager::from_config(
        target.config,
        target.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager);
    if let Some(setup) = setup {
        let naming = naming.clone();
        builder = builder.post_create(Hook::async_fn(move |client, _| {
            let setup = (!naming.unnamed()).then(|| setup.clone());
            Box::pin(async move {
                match setup {
                    Some(setup) => client
                        .batch_execute(&setup)
                        .await
                        .map_err(HookError::Backend),
                    None => Ok(()),
                }
            })
        }));
    }
    builder
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(10)),
            create,
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

    fn config(url: &str) -> Config {
        match Target::with_env(url, "DATABASE_URL", &|_| None) {
            Ok(target) => target.config().clone(),
            Err(error) => panic!("{url}: {error}"),
        }
    }

    #[test]
    fn the_broker_s_socket_settings_unless_the_string_sets_them() {
        let secs = Duration::from_secs;
        for url in ["postgres://app@db/bc", "host=db user=app dbname=bc\n"] {
            let c = config(url);
            assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
            assert!(c.get_keepalives());
            assert_eq!(c.get_keepalives_idle(), secs(10));
            assert_eq!(c.get_keepalives_interval(), Some(secs(5)));
            assert_eq!(c.get_keepalives_retries(), Some(3));
            assert_eq!(c.get_tcp_user_timeout(), Some(&secs(25)), "idle + 5 s * 3");
            assert_eq!(create_timeout(&c), Some(CONNECT_TIMEOUT));
        }
        // libpq's tcp_user_timeout is in milliseconds; 0 leaves the system's.
        let c = config("postgres://db/bc?tcp_user_timeout=1500");
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_millis(1500)));
        assert_eq!(
            config("host=db tcp_user_timeout=0").get_tcp_user_timeout(),
            None
        );
        // Longer keepalives: the user timeout follows them.
        let c = config("host=db keepalives_idle=60 keepalives_count=6");
        assert_eq!(c.get_keepalives_idle(), secs(60));
        assert_eq!(c.get_keepalives_interval(), Some(secs(5)), "still ours");
        assert_eq!(c.get_tcp_user_timeout(), Some(&secs(90)));
        // Left to the system: Linux's interval and count.
        let c = config("host=db keepalives_interval=0");
        assert_eq!(c.get_tcp_user_timeout(), Some(&secs(10 + 75 * 3)));
        let c = config("host=db keepalives=0");
        assert!(!c.get_keepalives());
        assert_eq!(c.get_tcp_user_timeout(), Some(&secs(25)));
        // connect_timeout as libpq: per host, at least 2 s, 0 waits forever.
        let c = config("postgres://db1,db2/bc?connect_timeout=1");
        assert_eq!(c.get_connect_timeout(), Some(&secs(2)));
        assert_eq!(create_timeout(&c), Some(secs(4)));
        let c = config("host=db connect_timeout=0");
        assert_eq!((c.get_connect_timeout(), create_timeout(&c)), (None, None));
    }

    #[test]
    fn a_trailing_newline_keeps_the_string_s_sslmode() {
        for url in [
            "host=db user=app dbname=bc sslmode=require\n",
            "host=db user=app dbname=bc sslmode=require \t\r\n",
        ] {
            let target = Target::with_env(url, "DATABASE_URL", &|_| None).unwrap();
            assert_eq!(target.ssl_mode(), SslMode::Require, "{url:?}");
            assert_eq!(
                target.config().get_ssl_mode(),
                tokio_postgres::config::SslMode::Require
            );
        }
    }
}
