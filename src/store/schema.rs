//! What `serve` checks before it starts, on a dedicated session and without
//! any right beyond reading the catalog: that the schema is at the version
//! this build needs, and that its role holds the rights of `sql/grants.sql`.
//! It never changes the schema (that is [`super::migrate`], the owner's).

use tokio_postgres::Client;

use super::migrate;
use super::sql::schema::{CURRENT_ROLE, LEDGER_EXISTS, RUNTIME_RIGHTS};

/// The schema's version as the broker's role sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// No `backchannel.schema_migrations`: nothing installed yet.
    NotInstalled,
    /// There, but this role may not read it.
    Unreadable,
    /// The newest migration recorded.
    At(i32),
}

/// The schema and the rights of the broker's role.
#[derive(Debug, Clone)]
pub struct Found {
    /// The role the broker connects as.
    pub role: String,
    pub version: Version,
    /// Rights of `sql/grants.sql` this role lacks (or whose object is missing).
    pub missing: Vec<String>,
}

impl Version {
    /// The version as a number: 0 when not installed, -1 when unreadable.
    pub fn number(self) -> i32 {
        match self {
            Version::NotInstalled => 0,
            Version::Unreadable => -1,
            Version::At(version) => version,
        }
    }
}

impl Found {
    /// Whether migrations are pending.
    pub fn behind(&self) -> bool {
        match self.version {
            Version::NotInstalled => true,
            Version::Unreadable => false,
            Version::At(version) => version < migrate::latest(),
        }
    }

    /// What is wrong for `serve`, as a message saying what to run; `None` when
    /// the schema is current and every right is there.
    pub fn problem(&self) -> Option<String> {
        let needed = migrate::latest();
        let role = &self.role;
        let grant = format!(
            "as the schema's owner, run `backchannel migrate --grant {role}` (or: psql -v \
             role={role} -f {}); see {}",
            migrate::grants_file(),
            migrate::postgres_doc()
        );
        let migrate = "run `backchannel migrate` with DATABASE_URL set to the URL of the role \
                       that owns the schema (`backchannel migrate --print` shows the SQL first)";
        match self.version {
            Version::NotInstalled => {
                return Some(format!(
                    "the backchannel schema is not installed in this database (this build needs \
                     version {needed}): {migrate}; then {grant}, and start again"
                ));
            }
            Version::At(version) if version < needed => {
                return Some(format!(
                    "the database schema is at version {version} and this build needs version \
                     {needed}: {migrate}, then start again"
                ));
            }
            Version::Unreadable | Version::At(_) => {}
        }
        if self.missing.is_empty() {
            return None;
        }
        Some(format!(
            "role {role} lacks rights it needs: {}; {grant}, and start again",
            self.missing.join(", ")
        ))
    }
}

/// Look at the schema and the rights of the connected role.
pub async fn inspect(client: &Client) -> Result<Found, tokio_postgres::Error> {
    let role: String = client.query_one(CURRENT_ROLE, &[]).await?.get(0);
    let ledger: bool = client.query_one(LEDGER_EXISTS, &[]).await?.get(0);
    let missing: Vec<String> = client
        .query(RUNTIME_RIGHTS, &[])
        .await?
        .iter()
        .filter(|row| row.get::<_, Option<bool>>(1) != Some(true))
        .map(|row| row.get(0))
        .collect();
    let version = if !ledger {
        Version::NotInstalled
    } else if missing.iter().any(|m| m.ends_with("schema_migrations")) {
        Version::Unreadable
    } else {
        Version::At(
            migrate::applied(client)
                .await?
                .into_iter()
                .max()
                .unwrap_or(0),
        )
    };
    Ok(Found {
        role,
        version,
        missing,
    })
}
