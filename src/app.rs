//! One broker instance: start it, run it, shut it down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::config::{MigrateMode, Settings, StatementMode};
use crate::http::{self, auth::Tokens};
use crate::store::{self, Session, Store, Target, connect};

/// A running instance: its address, its broker, and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub broker: Arc<Broker>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// How long the background tasks get to finish (flush notifications) after the server stopped.
const BACKGROUND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Apply pending migrations on a session of their own, as `target`'s role
/// (the schema's owner).
pub async fn migrate(target: &Target) -> anyhow::Result<Vec<i32>> {
    let mut session = dedicated(&target.named("backchannel-migrate")).await?;
    store::migrate::run(&mut session.client).await.map_err(|e| {
        anyhow::anyhow!(
            "applying migrations as {} failed: {}",
            target.variable(),
            migration_error(&e)
        )
    })
}

/// A migration error by SQLSTATE, saying what to do about a missing right.
fn migration_error(error: &tokio_postgres::Error) -> String {
    let insufficient = error
        .code()
        .is_some_and(|code| *code == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
    let identified = store::StoreError::from_ref(error);
    if insufficient {
        format!(
            "{identified}: this role may not change the schema. Run `backchannel migrate` with \
             the URL of the role that owns schema backchannel (or of a role with CREATE on the \
             database, which then owns it)"
        )
    } else {
        identified
    }
}

/// A dedicated session with the settings every dedicated session gets; a
/// failure to connect is explained (TLS, refusal) by the variable's name.
async fn dedicated(target: &Target) -> anyhow::Result<Session> {
    let session = Session::connect(target)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect: {}", target.explain(&e)))?;
    session
        .client
        .batch_execute(store::queries::DEDICATED_SESSION_SETUP)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", target.variable(), target.explain(&e)))?;
    Ok(session)
}

/// On one direct session: refuse to start when it would not be a session (see
/// [`check_sessions`]), and bring the schema to what this build needs or
/// refuse (`BACKCHANNEL_MIGRATE`).
async fn check_database(target: &Target, mode: MigrateMode) -> anyhow::Result<()> {
    let mut session = dedicated(&target.named("backchannel-check")).await?;
    check_sessions(&session).await?;
    let found = store::schema::inspect(&session.client)
        .await
        .map_err(|e| anyhow::anyhow!("checking the schema failed: {}", migration_error(&e)))?;
    if found.behind() && mode == MigrateMode::Auto {
        let applied = store::migrate::run(&mut session.client)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "BACKCHANNEL_MIGRATE=auto: applying migrations as role {} failed: {}",
                    found.role,
                    migration_error(&e)
                )
            })?;
        tracing::info!(?applied, "migrations applied (BACKCHANNEL_MIGRATE=auto)");
        let found = store::schema::inspect(&session.client).await?;
        return match found.problem() {
            Some(problem) => Err(anyhow::anyhow!(problem)),
            None => Ok(()),
        };
    }
    if let Some(problem) = found.problem() {
        return Err(anyhow::anyhow!(problem));
    }
    if let store::schema::Version::At(version) = found.version {
        if version > store::migrate::latest() {
            tracing::warn!(
                version,
                needed = store::migrate::latest(),
                "the schema is newer than this build (expected during a rolling upgrade)"
            );
        }
    }
    Ok(())
}

/// Refuse to start when the dedicated sessions would not be sessions: behind a
/// transaction-pooling proxy, consecutive statements may run on different
/// backends, so LISTEN and session advisory locks silently stop working.
async fn check_sessions(session: &Session) -> anyhow::Result<()> {
    let refuse = |what: &str| {
        anyhow::anyhow!(
            "{what}: LISTEN and the stream's advisory lock need a real session. Point \
             BACKCHANNEL_DIRECT_DATABASE_URL at PostgreSQL itself (or at a session-pooling proxy), \
             not at a transaction-pooling PgBouncer"
        )
    };
    match store::probe_session(&session.client).await {
        Ok(None) => Ok(()),
        Ok(Some(problem)) => Err(refuse(problem)),
        Err(error) if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
            Err(anyhow::anyhow!(
                "the database refuses LISTEN: it is a standby in recovery. Point the URL at the \
                 primary, or list every host with target_session_attrs=read-write"
            ))
        }
        Err(error) => Err(refuse(&format!("the session check failed ({error})"))),
    }
}

/// The two targets of an instance: the pool's (`DATABASE_URL`) and the
/// dedicated sessions' (`BACKCHANNEL_DIRECT_DATABASE_URL`, else the same).
fn targets(settings: &Settings) -> anyhow::Result<(Target, Target)> {
    let pooled = Target::new(&settings.database_url, "DATABASE_URL")?;
    let direct = match &settings.direct_database_url {
        Some(url) => Target::new(url, "BACKCHANNEL_DIRECT_DATABASE_URL")?,
        None => pooled.clone(),
    };
    Ok((pooled, direct))
}

/// What runs once on every new pooled connection: nothing behind a
/// transaction pooler (a SET there would reach other clients).
fn pool_setup(settings: &Settings) -> Option<String> {
    if settings.statements == StatementMode::Unnamed {
        return None;
    }
    let mut setup = store::queries::POOLED_SESSION_SETUP.to_owned();
    if let Some(more) = settings.session_setup() {
        setup.push_str("; ");
        setup.push_str(&more);
    }
    Some(setup)
}

fn instance_name(settings: &Settings) -> String {
    if let Some(id) = &settings.instance_id {
        return id.clone();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix: u32 = rand::random_range(0..0x10000);
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

/// Validate settings, check (or migrate) the schema, start the background
/// tasks and serve.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    settings.validate()?;
    let tokens = Arc::new(Tokens::load(&settings)?);
    let (pooled, direct) = targets(&settings)?;
    check_database(&direct, settings.migrate).await?;

    let pool = connect::pool(&pooled, settings.pool_size, pool_setup(&settings));
    // The pool connects lazily: connect once now, so that a wrong DATABASE_URL
    // (TLS, password, a pooler) is found at start-up with its reason.
    drop(pool.get().await.map_err(|e| match &e {
        deadpool_postgres::PoolError::Backend(e) => {
            anyhow::anyhow!("cannot connect: {}", pooled.explain(e))
        }
        other => anyhow::anyhow!("cannot connect with DATABASE_URL: {other}"),
    })?);
    let unnamed = settings.statements == StatementMode::Unnamed;
    let shutdown = CancellationToken::new();
    let settings = Arc::new(settings);
    let broker = Broker::new(
        settings.clone(),
        Store::new(pool).with_unnamed_statements(unnamed),
        direct.named("backchannel-session"),
        instance_name(&settings),
        shutdown.clone(),
    );
    let background = broker.spawn_loops(direct.named("backchannel-listen"));

    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.bind))?;
    let addr = listener.local_addr()?;
    let routes = http::routes(broker.clone(), tokens);
    let server = http::serve::serve(listener, routes, settings.header_timeout, shutdown.clone());
    let grace = settings.shutdown_grace;
    let signal = shutdown.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = server => {}
            _ = async { signal.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
    });
    tracing::info!(%addr, instance = %broker.instance(), wake = ?settings.wake, "backchannel listening");
    Ok(Running {
        addr,
        broker,
        shutdown,
        task,
        background,
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

impl Running {
    /// Begin a graceful shutdown: stop accepting, end the stream, answer waiters.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until the server has stopped (after `shutdown`).
    pub async fn wait(self) {
        let _ = self.task.await;
        let background = futures_util::future::join_all(self.background);
        let _ = tokio::time::timeout(BACKGROUND_GRACE, background).await;
    }

    /// Shut down and wait.
    pub async fn stop(self) {
        self.shutdown();
        self.wait().await;
    }
}
