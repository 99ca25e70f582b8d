//! What `serve` settles before it serves: where its connections go (the two
//! URLs, with their TLS), that its direct URL gives real sessions, that the
//! schema is at the version it needs (migrating first with
//! `BACKCHANNEL_MIGRATE=auto`), and that each role it uses (the direct
//! URL's, the pool's) has the rights it needs. Also `migrate`, the owner's
//! path, on a session of its own.

use deadpool_postgres::{Pool, PoolError};
use tokio_postgres::error::SqlState;

use crate::config::{MigrateMode, Settings, StatementMode};
use crate::store::{self, Naming, QueryPool, Session, Target, connect};

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
pub(super) fn migration_error(error: &tokio_postgres::Error) -> String {
    let insufficient = error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE);
    let identified = store::StoreError::from_ref(error);
    if insufficient {
        format!(
            "{identified}: this role may not change the schema. Run `backchannel migrate` with \
             the URL of the role that owns schema backchannel (or of a role with CREATE on the \
             database, which then owns it); see {}",
            store::migrate::postgres_doc()
        )
    } else {
        identified
    }
}

/// A dedicated session with the settings every dedicated session gets; a
/// failure to connect is explained (TLS, refusal) by the variable's name.
pub(super) async fn dedicated(target: &Target) -> anyhow::Result<Session> {
    let session = Session::connect(target)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect: {}", target.explain(&e)))?;
    session
        .set_up_dedicated()
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", target.variable(), target.explain(&e)))?;
    Ok(session)
}

/// On one direct session: refuse to start when it would not be a session (see
/// `check_sessions`), and bring the schema to what this build needs or
/// refuse (`BACKCHANNEL_MIGRATE`). The schema's version, once good.
pub async fn check_database(target: &Target, mode: MigrateMode) -> anyhow::Result<i32> {
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
        return match found.problem(target.variable()) {
            Some(problem) => Err(anyhow::anyhow!(problem)),
            None => Ok(found.version.number()),
        };
    }
    if let Some(problem) = found.problem(target.variable()) {
        return Err(anyhow::anyhow!(problem));
    }
    let version = found.version.number();
    if version > store::migrate::latest() {
        tracing::warn!(
            version,
            needed = store::migrate::latest(),
            "the schema is newer than this build (expected during a rolling upgrade)"
        );
    }
    Ok(version)
}

/// Refuse to start when the dedicated sessions would not be sessions: behind a
/// transaction-pooling proxy, consecutive statements may run on different
/// backends, so LISTEN and session advisory locks silently stop working.
pub(super) async fn check_sessions(session: &Session) -> anyhow::Result<()> {
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
pub fn targets(settings: &Settings) -> anyhow::Result<(Target, Target)> {
    let pooled = Target::new(&settings.database_url, "DATABASE_URL")?;
    let direct = match &settings.direct_database_url {
        Some(url) => Target::new(url, "BACKCHANNEL_DIRECT_DATABASE_URL")?,
        None => pooled.clone(),
    };
    Ok((pooled, direct))
}

/// The query pool, connected once: it connects lazily, and a wrong
/// DATABASE_URL (TLS, password, a pooler) is better found at start-up, with
/// its reason. Its role's rights are [`pool_rights`]' (after the schema is
/// known to be there). Its statements start prepared, or unnamed as set.
pub async fn pool(target: &Target, settings: &Settings) -> anyhow::Result<QueryPool> {
    let unnamed = settings.statements == StatementMode::Unnamed;
    let naming = Naming::new(unnamed);
    let setup = connect::pool_setup(unnamed, settings.synchronous_commit.as_deref());
    let pool = connect::pool(target, settings.pool_size, setup, &naming);
    drop(connected(&pool, target).await?);
    Ok(QueryPool { pool, naming })
}

/// The rights of the pool's role (which may not be the direct URL's, checked
/// by [`check_database`]): refuse to start naming the role and each right it
/// lacks, rather than answer every submit with a 500.
pub async fn pool_rights(pool: &Pool, target: &Target) -> anyhow::Result<()> {
    let client = connected(pool, target).await?;
    let rights = store::schema::rights(&client).await.map_err(|e| {
        anyhow::anyhow!(
            "checking the rights of {}'s role failed: {}",
            target.variable(),
            store::StoreError::from_ref(&e)
        )
    })?;
    match rights.problem(target.variable()) {
        Some(problem) => Err(anyhow::anyhow!(problem)),
        None => Ok(()),
    }
}

/// A connection of `pool`, or why there is none.
async fn connected(pool: &Pool, target: &Target) -> anyhow::Result<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| match &e {
        PoolError::Backend(e) => anyhow::anyhow!("cannot connect: {}", target.explain(e)),
        other => anyhow::anyhow!("cannot connect with {}: {other}", target.variable()),
    })
}
