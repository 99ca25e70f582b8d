//! Numbered migrations from `sql/`, applied in one transaction under an
//! advisory lock so that instances starting together apply each one once.

use tokio_postgres::Client;

use super::queries::{LOCK_MIGRATE, LOCK_NAMESPACE};

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "001_jobs.sql", include_str!("../../sql/001_jobs.sql")),
    (
        2,
        "002_trim_indexes.sql",
        include_str!("../../sql/002_trim_indexes.sql"),
    ),
    (
        3,
        "003_lighter_writes.sql",
        include_str!("../../sql/003_lighter_writes.sql"),
    ),
    (
        4,
        "004_submit_refuses_what_http_refuses.sql",
        include_str!("../../sql/004_submit_refuses_what_http_refuses.sql"),
    ),
];

/// Apply every pending migration; returns the versions applied by this call.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Transaction-scoped: released at commit, never left behind on a session.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_NAMESPACE, &LOCK_MIGRATE],
    )
    .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS backchannel;
         CREATE TABLE IF NOT EXISTS backchannel.schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM backchannel.schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO backchannel.schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tracing::info!(version, name, "migration applied");
        done.push(*version);
    }
    tx.commit().await?;
    Ok(done)
}
