//! `backchannel migrate`: apply the schema as its owner, print it for a DBA
//! to review, or grant the runtime role its rights.

use clap::Args;

use crate::app;
use crate::store::{self, Session, Target};

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
        store::migrate::grant(&session.client, role)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "granting failed ({}): run it as the owner of schema backchannel, after \
                     `backchannel migrate`",
                    store::StoreError::from_ref(&e)
                )
            })?;
        return Ok(format!("granted role {role} the rights of sql/grants.sql"));
    }
    let applied = app::migrate(&target).await?;
    Ok(format!(
        "applied {} migration(s); the schema is at version {}",
        applied.len(),
        store::migrate::latest()
    ))
}

async fn connect(target: &Target) -> anyhow::Result<Session> {
    Session::connect(&target.named("backchannel-migrate"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect: {}", target.explain(&e)))
}
