//! The scratch database and what PostgreSQL says about it: transaction
//! counters (`pg_stat_database`) and connections (`pg_stat_activity`).
//!
//! All observation runs on connections to the server's maintenance database,
//! so it never shows up in the scratch database's own numbers.
//!
//! Counting transactions exactly: a PostgreSQL 15 backend reports its counters
//! at most once a second while busy and up to 10 s late once idle, but always
//! when it exits. So the counter is read only while no backend of the scratch
//! database is alive (before the brokers start and after they stopped).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use backchannel::store::Target;
use backchannel::store::connect::Stream;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Connection, Socket};
use tokio_util::sync::CancellationToken;

/// Open a connection with the broker's own TLS handling (`sslmode`,
/// `sslrootcert`, ... in the URL or `PGSSL*`), for the caller to drive.
pub async fn open(url: &str) -> anyhow::Result<(Client, Connection<Socket, Stream>)> {
    let target = Target::new(url, "DATABASE_URL")?;
    target
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {}", target.explain(&e)))
}

/// Connect and drive the connection on a task.
pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = open(url).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` with its database name replaced (options after `?` are kept, and may
/// contain slashes, as in `?host=/var/run/postgresql`).
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (path, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let bad = || anyhow::anyhow!("DATABASE_URL must look like postgres://user@host:port/database");
    let scheme_end = path.find("://").ok_or_else(bad)? + 3;
    let slash = path[scheme_end..].find('/').ok_or_else(bad)? + scheme_end;
    Ok(format!("{}/{database}{query}", &path[..slash]))
}

/// A database of the bench's own, dropped at the end (also on panic).
pub struct Scratch {
    pub name: String,
    pub url: String,
    admin_url: String,
    admin: Client,
    dropped: bool,
}

impl Scratch {
    /// Create a fresh database on the server of `server_url`.
    pub async fn create(server_url: &str) -> anyhow::Result<Scratch> {
        let admin = connect(server_url).await?;
        let name = format!(
            "backchannel_bench_{}_{:06x}",
            std::process::id(),
            rand::random_range(0..0x100_0000u32)
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("cannot create the scratch database (the role needs CREATEDB)")?;
        Ok(Scratch {
            url: with_database(server_url, &name)?,
            name,
            admin_url: server_url.to_owned(),
            admin,
            dropped: false,
        })
    }

    /// Drop the database, closing whatever is still connected to it.
    pub async fn drop_database(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        self.admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .context("cannot drop the scratch database")?;
        Ok(())
    }

    /// A server setting for the scratch database's new sessions
    /// (`ALTER DATABASE ... SET`); `log_statement = all` logs every statement.
    pub async fn set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            bail!("{name:?} is not a setting name");
        }
        let value = value.replace('\'', "''");
        self.admin
            .batch_execute(&format!(
                "ALTER DATABASE {} SET {name} = '{value}'",
                self.name
            ))
            .await
            .with_context(|| format!("cannot set {name} on the scratch database"))?;
        Ok(())
    }

    /// "PostgreSQL 15.x" (for the report).
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let row = self.admin.query_one("SHOW server_version", &[]).await?;
        let version: String = row.get(0);
        Ok(format!(
            "PostgreSQL {}",
            version.split_whitespace().next().unwrap_or("?")
        ))
    }

    /// Committed plus rolled-back transactions of the scratch database so far.
    pub async fn transactions(&self) -> anyhow::Result<i64> {
        let row = self
            .admin
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
                &[&self.name],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Open connections to the scratch database.
    pub async fn connections(&self) -> anyhow::Result<i64> {
        let row = self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Wait until no backend is connected to the scratch database and its
    /// counters have settled; returns the (now exact) transaction count.
    pub async fn quiesce(&self) -> anyhow::Result<i64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.connections().await? > 0 {
            if tokio::time::Instant::now() > deadline {
                bail!("connections to the scratch database did not close within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A backend leaves pg_stat_activity just before it flushes its counters.
        let mut last = self.transactions().await?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.transactions().await?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
    }

    /// Empty the jobs table between scenarios (on a connection that is then closed).
    pub async fn reset(&self) -> anyhow::Result<()> {
        let client = connect(&self.url).await?;
        client
            .batch_execute(
                "TRUNCATE backchannel.jobs RESTART IDENTITY; DELETE FROM backchannel.stream_holder;",
            )
            .await
            .context("cannot empty the jobs table")?;
        drop(client);
        Ok(())
    }

    /// `VACUUM ANALYZE` the jobs table, so autovacuum has no reason to visit
    /// it during a measuring window that follows (its transactions would count).
    pub async fn vacuum(&self) -> anyhow::Result<()> {
        let client = connect(&self.url).await?;
        client
            .batch_execute("VACUUM ANALYZE backchannel.jobs")
            .await
            .context("cannot vacuum the jobs table")?;
        Ok(())
    }

    /// Wait until the jobs table holds `jobs` rows (on a connection of its own,
    /// closed afterwards so its counters are reported at once).
    pub async fn stored(&self, jobs: usize, give_up: Duration) -> anyhow::Result<()> {
        let client = connect(&self.url).await?;
        let deadline = tokio::time::Instant::now() + give_up;
        loop {
            let row = client
                .query_one("SELECT count(*) FROM backchannel.jobs", &[])
                .await?;
            if row.get::<_, i64>(0) >= jobs as i64 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{jobs} jobs were not stored within {give_up:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wait until every backend of the scratch database has been idle for
    /// `seconds` (with at least one connected).
    pub async fn quiet(&self, seconds: f64, give_up: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + give_up;
        loop {
            let backends = self.backends().await?;
            if !backends.is_empty()
                && backends
                    .iter()
                    .all(|(_, idle, secs)| *idle && *secs >= seconds)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the scratch database did not go quiet within {give_up:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Backends of the scratch database: (pid, idle, seconds since their state changed).
    pub async fn backends(&self) -> anyhow::Result<Vec<(u32, bool, f64)>> {
        let rows = self
            .admin
            .query(
                "SELECT pid, state = 'idle',
                        coalesce(extract(epoch FROM now() - state_change), 0)::float8
                 FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u32, r.get(1), r.get(2)))
            .collect())
    }

    /// Sample the connections every 100 ms until `stop`, on a connection of its own.
    pub async fn sampler(&self, stop: CancellationToken) -> anyhow::Result<Sampler> {
        let client = connect(&self.admin_url).await?;
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            let mut sampled = Sampled::default();
            let statement = client
                .prepare(
                    "SELECT pid, backend_type = 'autovacuum worker'
                     FROM pg_stat_activity WHERE datname = $1",
                )
                .await?;
            loop {
                let rows = client.query(&statement, &[&name]).await?;
                sampled.peak = sampled.peak.max(rows.len() as i64);
                sampled
                    .pids
                    .extend(rows.iter().map(|r| r.get::<_, i32>(0) as u32));
                if rows.iter().any(|r| r.get::<_, bool>(1)) {
                    sampled.autovacuum = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.cancelled() => return Ok(sampled),
                }
            }
        });
        Ok(Sampler { task })
    }
}

impl Drop for Scratch {
    /// The last resort (a panic or an early error): drop the database on a
    /// thread of its own, since this may run outside any runtime.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(client) = connect(&url).await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// What the sampler saw.
#[derive(Debug, Default, Clone)]
pub struct Sampled {
    pub peak: i64,
    /// Every backend seen (for their CPU time).
    pub pids: BTreeSet<u32>,
    /// An autovacuum worker was seen on the scratch database (its
    /// transactions count in the same counters).
    pub autovacuum: bool,
}

pub struct Sampler {
    task: JoinHandle<Result<Sampled, tokio_postgres::Error>>,
}

impl Sampler {
    /// The peak so far ends with the sampler (cancel its token first).
    pub async fn finish(self) -> anyhow::Result<Sampled> {
        Ok(self.task.await.context("the connection sampler failed")??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_options_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x").unwrap(),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u@h/x?sslmode=disable"
        );
        assert!(with_database("postgres://u@h:5432", "x").is_err());
        assert_eq!(
            with_database("postgresql:///postgres?host=/var/run/postgresql", "x").unwrap(),
            "postgresql:///x?host=/var/run/postgresql"
        );
    }
}
