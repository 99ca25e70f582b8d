//! Numbered migrations from `sql/`, applied by the schema's owner
//! (`backchannel migrate`, or `serve` with `BACKCHANNEL_MIGRATE=auto`) in one
//! transaction under an advisory lock, so that instances starting together
//! apply each one once. [`script`] prints the same SQL for a DBA to review or
//! run by hand; [`grants`] the rights of the runtime role (`sql/grants.sql`).
//!
//! The list is explicit: only the files named here are migrations
//! (`sql/grants.sql` is not one).

use tokio_postgres::Client;

use super::sql::schema::{
    APPLIED, CREATE_LEDGER, CREATE_SCHEMA, LEDGER_EXISTS, MIGRATE_LOCK, RECORD, ROLE_EXISTS,
    SCHEMA_EXISTS,
};
use super::sql::{LOCK_MIGRATE, LOCK_NAMESPACE};

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
    (
        5,
        "005_key_locks.sql",
        include_str!("../../sql/005_key_locks.sql"),
    ),
    (
        6,
        "006_advertise_url.sql",
        include_str!("../../sql/006_advertise_url.sql"),
    ),
    (
        7,
        "007_channels.sql",
        include_str!("../../sql/007_channels.sql"),
    ),
];

/// The grants of the runtime role, with the psql variable `:"role"`.
pub const GRANTS: &str = include_str!("../../sql/grants.sql");

/// Where the Debian package installs `sql/grants.sql` (messages name both).
pub const INSTALLED_GRANTS: &str = "/usr/share/backchannel/sql/grants.sql";
/// Where the Debian package installs `docs/postgres.md`, the DBA's page.
pub const INSTALLED_POSTGRES_DOC: &str = "/usr/share/doc/backchannel/docs/postgres.md";

/// `sql/grants.sql` by both its names, for messages.
pub fn grants_file() -> String {
    format!("{INSTALLED_GRANTS} (sql/grants.sql in the source tree)")
}

/// `docs/postgres.md` by both its names, for messages.
pub fn postgres_doc() -> String {
    format!("{INSTALLED_POSTGRES_DOC} (docs/postgres.md in the source tree)")
}

/// The schema version this build needs: its last migration.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

/// Apply every pending migration; returns the versions applied by this call.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // Transaction-scoped: released at commit, never left behind on a session.
    tx.execute(MIGRATE_LOCK, &[&LOCK_NAMESPACE, &LOCK_MIGRATE])
        .await?;
    let exists: bool = tx.query_one(SCHEMA_EXISTS, &[]).await?.get(0);
    if !exists {
        tx.batch_execute(CREATE_SCHEMA).await?;
    }
    tx.batch_execute(CREATE_LEDGER).await?;
    let applied: Vec<i32> = tx
        .query(APPLIED, &[])
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
        tx.execute(RECORD, &[version, name]).await?;
        tracing::info!(version, name, "migration applied");
        done.push(*version);
    }
    tx.commit().await?;
    Ok(done)
}

/// The versions recorded as applied; empty when the schema is not there.
pub async fn applied(client: &Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let ledger: bool = client.query_one(LEDGER_EXISTS, &[]).await?.get(0);
    if !ledger {
        return Ok(Vec::new());
    }
    Ok(client
        .query(APPLIED, &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The SQL that [`run`] would execute on a database where `applied` are
/// recorded (all migrations with `all`), as one psql script: a DBA can review
/// it, and run it as the schema's owner (`psql -v ON_ERROR_STOP=1 -f`)
/// instead of `backchannel migrate`. `None` when nothing is pending.
pub fn script(applied: &[i32], all: bool) -> Option<String> {
    let pending: Vec<_> = MIGRATIONS
        .iter()
        .filter(|(version, _, _)| all || !applied.contains(version))
        .collect();
    if pending.is_empty() {
        return None;
    }
    let names: Vec<&str> = pending.iter().map(|(_, name, _)| *name).collect();
    let mut out = format!(
        "-- backchannel: schema migrations {} (this build needs version {}).\n\
         -- Run as the role that owns (or will own) schema backchannel, in one\n\
         -- transaction: psql -v ON_ERROR_STOP=1 -f this-file.sql\n\
         -- Then grant the runtime role its rights: backchannel migrate --grant ROLE,\n\
         -- or psql -v role=ROLE -f {INSTALLED_GRANTS}\n\
         -- (sql/grants.sql in the source tree). See {INSTALLED_POSTGRES_DOC}.\n\n\
         BEGIN;\n\
         SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, {LOCK_MIGRATE});\n\
         {CREATE_SCHEMA};\n\
         {CREATE_LEDGER};\n",
        names.join(", "),
        latest()
    );
    for (version, name, sql) in pending {
        out.push_str(&format!("\n-- {name}\n{}\n", sql.trim_end()));
        out.push_str(&format!(
            "INSERT INTO backchannel.schema_migrations (version, name) VALUES ({version}, '{name}');\n"
        ));
    }
    out.push_str("\nCOMMIT;\n");
    Some(out)
}

/// `sql/grants.sql` for `role`, as one batch of statements.
pub fn grants(role: &str) -> String {
    let quoted = format!("\"{}\"", role.replace('"', "\"\""));
    GRANTS.replace(":\"role\"", &quoted)
}

/// Grant `role` the rights of `sql/grants.sql` (run as the schema's owner).
pub async fn grant(client: &Client, role: &str) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(&grants(role)).await
}

/// Whether a role of that name exists in the cluster.
pub async fn role_exists(client: &Client, role: &str) -> Result<bool, tokio_postgres::Error> {
    Ok(client.query_one(ROLE_EXISTS, &[&role]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numbered_in_order_and_named_like_their_files() {
        for (i, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i32 + 1);
            assert!(name.starts_with(&format!("{version:03}_")), "{name}");
        }
        assert_eq!(latest(), MIGRATIONS.len() as i32);
    }

    #[test]
    fn the_script_holds_the_pending_migrations_and_their_records() {
        let pending = script(&[1, 2], false).unwrap();
        assert!(!pending.contains("-- 001_jobs.sql"));
        assert!(pending.contains("-- 003_lighter_writes.sql"));
        assert!(pending.contains("VALUES (3, '003_lighter_writes.sql')"));
        assert!(pending.trim_end().ends_with("COMMIT;"));
        assert!(
            script(&[1, 2, 3], true)
                .unwrap()
                .contains("-- 001_jobs.sql")
        );
        let all: Vec<i32> = (1..=latest()).collect();
        assert_eq!(script(&all, false), None);
    }

    #[test]
    fn grants_quote_the_role() {
        let sql = grants("bc\"app");
        assert!(sql.contains("TO \"bc\"\"app\";"), "{sql}");
        assert!(!sql.contains(":\"role\""));
    }
}
