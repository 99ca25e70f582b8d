//! `backchannel migrate`: apply the schema as its owner, print it for a DBA
//! to review, or grant the runtime role its rights.

use clap::Args;

use crate::app;
use tokio_postgres::error::SqlState;

use crate::store::{self, Session, StoreError, Target};

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// PostgreSQL URL of the role that owns the schema (or will: it needs
    /// CREATE on the database, or a schema `backchannel` it owns).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Print the SQL of the pending migrations, as one script to review (and
    /// run with psql if you like), instead of applying it.
    #[arg(long)]
    pub print: bool,

    /// With --print: every migration, not only the pending ones (no
    /// connection needed).
    #[arg(long, requires = "print")]
    pub all: bool,

    /// Grant ROLE the rights `serve` needs (sql/grants.sql), as the schema's
    /// owner; after migrating.
    #[arg(long, value_name = "ROLE", conflicts_with = "print")]
    pub grant: Option<String>,
}

/// Run `backchannel migrate` with `args`; what to print on success.
pub async fn run(args: MigrateArgs) -> anyhow::Result<String> {
    if args.print && args.all {
        return Ok(store::migrate::script(&[], true).unwrap_or_default());
    }
    let url = args.database_url.as_deref().ok_or_else(|| {
        anyhow::anyhow!("DATABASE_URL (or --database-url) is required, except for --print --all")
    })?;
    let target = Target::new(url, "DATABASE_URL")?;
    if args.print {
        let session = connect(&target).await?;
        let applied = store::migrate::applied(&session.client)
            .await
            .map_err(|e| anyhow::anyhow!("reading the applied migrations failed: {e}"))?;
        return Ok(store::migrate::script(&applied, false).unwrap_or_else(|| {
            format!(
                "-- nothing pending: the schema is at version {}\n",
                store::migrate::latest()
            )
        }));
    }
    if let Some(role) = &args.grant {
        let session = connect(&target).await?;
        return grant(&session, role).await;
    }
    let applied = app::migrate(&target).await?;
    Ok(format!(
        "applied {} migration(s); the schema is at version {}",
        applied.len(),
        store::migrate::latest()
    ))
}

/// `--grant ROLE`: the role must exist; a refusal says why by SQLSTATE.
async fn grant(session: &Session, role: &str) -> anyhow::Result<String> {
    let exists = store::migrate::role_exists(&session.client, role)
        .await
        .map_err(|e| anyhow::anyhow!("cannot look the role up: {}", StoreError::from_ref(&e)))?;
    if !exists {
        anyhow::bail!(
            "role {role} does not exist: create it first (as a role with CREATEROLE: CREATE \
             ROLE {role} LOGIN PASSWORD '...'), then grant again; see {}",
            store::migrate::postgres_doc()
        );
    }
    store::migrate::grant(&session.client, role)
        .await
        .map_err(|e| {
            let identified = StoreError::from_ref(&e);
            let code = e.code();
            let missing = [
                SqlState::INVALID_SCHEMA_NAME,
                SqlState::UNDEFINED_TABLE,
                SqlState::UNDEFINED_FUNCTION,
                SqlState::UNDEFINED_OBJECT,
            ];
            if code.is_some_and(|c| missing.contains(c)) {
                anyhow::anyhow!(
                    "granting failed ({identified}): the schema is not (fully) installed: run \
                     `backchannel migrate` first, as its owner"
                )
            } else if code == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                anyhow::anyhow!(
                    "granting failed ({identified}): only the owner of schema backchannel may \
                     grant its rights: use the owner's URL (the role that ran `backchannel \
                     migrate`); see {}",
                    store::migrate::postgres_doc()
                )
            } else {
                anyhow::anyhow!("granting failed ({identified})")
            }
        })?;
    Ok(format!(
        "granted role {role} the rights of {}",
        store::migrate::grants_file()
    ))
}

async fn connect(target: &Target) -> anyhow::Result<Session> {
    Session::connect(&target.named("backchannel-migrate"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect: {}", target.explain(&e)))
}
