//! What `serve` checks before it starts, without any right beyond reading
//! the catalog: that the schema is at the version this build needs (on a
//! dedicated session), and that each role it will use (the pool's and the
//! dedicated sessions') holds the rights of `sql/grants.sql` ([`rights`],
//! on a connection of that role). It never changes the schema (that is
//! [`super::migrate`], the owner's).

use tokio_postgres::{Client, SimpleQueryMessage};

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

/// The rights of `sql/grants.sql` one role lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// The role of the connection they were read on.
    pub role: String,
    /// What it lacks (or whose object is missing), e.g. `USAGE on sequence
    /// backchannel.jobs_id_seq`; empty when it has every right.
    pub missing: Vec<String>,
}

impl Rights {
    /// What is wrong for `serve`, naming the role, the variable whose URL
    /// connects as it, each missing right and what to run; `None` when
    /// nothing is missing.
    pub fn problem(&self, variable: &str) -> Option<String> {
        lacking(&self.role, variable, &self.missing)
    }
}

/// What to run to give `role` the rights of `sql/grants.sql`.
fn grant_advice(role: &str) -> String {
    format!(
        "as the schema's owner, run `backchannel migrate --grant {role}` (or: psql -v \
         role={role} -f {}); see {}",
        migrate::grants_file(),
        migrate::postgres_doc()
    )
}

fn lacking(role: &str, variable: &str, missing: &[String]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "role {role} (of {variable}) lacks rights it needs: {}; {}, and start again",
        missing.join(", "),
        grant_advice(role)
    ))
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
    /// the schema is current and every right is there. `variable` names the
    /// URL whose role this is.
    pub fn problem(&self, variable: &str) -> Option<String> {
        let needed = migrate::latest();
        let grant = grant_advice(&self.role);
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
        lacking(&self.role, variable, &self.missing)
    }
}

/// The role of `client`'s connection and the rights of `sql/grants.sql` it
/// lacks. Simple queries only (one message each, no prepared statement),
/// so this works on a pooled connection through a transaction pooler too.
pub async fn rights(client: &Client) -> Result<Rights, tokio_postgres::Error> {
    let rows = |messages: Vec<SimpleQueryMessage>| {
        messages.into_iter().filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
    };
    let role = rows(client.simple_query(CURRENT_ROLE).await?)
        .next()
        .and_then(|row| row.get(0).map(str::to_owned))
        .unwrap_or_default();
    let missing = rows(client.simple_query(RUNTIME_RIGHTS).await?)
        .filter(|row| row.get(1) != Some("t"))
        .filter_map(|row| row.get(0).map(str::to_owned))
        .collect();
    Ok(Rights { role, missing })
}

/// Look at the schema and the rights of the connected role.
pub async fn inspect(client: &Client) -> Result<Found, tokio_postgres::Error> {
    let Rights { role, missing } = rights(client).await?;
    let ledger: bool = client.query_one(LEDGER_EXISTS, &[]).await?.get(0);
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
