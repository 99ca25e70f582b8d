//! All database calls. Handlers and the domain never see SQL.
//!
//! - [`Store`]: the statements run on the query pool (this file);
//! - [`StreamSession`]: the stream's own session, its advisory lock and claim;
//! - [`connect`]: where connections go (with [`tls`]), the pool, dedicated sessions;
//! - [`migrate`]: the numbered migrations of `sql/`; [`schema`]: serve's check of them;
//! - [`queries`]: the text of every statement.

pub mod connect;
mod error;
mod health;
pub mod migrate;
mod pooler;
pub mod queries;
mod rows;
pub mod schema;
mod stream_session;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use crate::job::{Answer, Job, NewJob};

pub use connect::{Session, Target};
pub use error::StoreError;
pub use queries::{CHANNEL_DONE, CHANNEL_NEW};
pub use stream_session::StreamSession;

use queries::{LOCK_NAMESPACE, LOCK_REAPER, LOCK_STREAM, Sql};
use rows::job_from_row;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A job read by id, and whether this read expired it (then notify).
#[derive(Debug, Clone)]
pub struct ReadJob {
    pub job: Job,
    pub expired_now: bool,
}

/// What one reaper tick did.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    pub expired: Vec<i64>,
    /// Seconds from creation to expiry of each expired job.
    pub ages: Vec<f64>,
    pub deleted: u64,
}

/// Who holds the stream lock right now.
#[derive(Debug, Clone)]
pub struct Holder {
    pub pid: i32,
    pub listener_id: Option<String>,
    pub instance: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// Statements sent by one instance, on every path (pool and dedicated sessions).
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The query pool and a count of the statements the broker sent.
pub struct Store {
    pool: Pool,
    statements: Counter,
    /// Send pooled statements unnamed (through a transaction pooler).
    unnamed: bool,
}

impl Store {
    pub fn new(pool: Pool) -> Store {
        Store {
            pool,
            statements: Counter::default(),
            unnamed: false,
        }
    }

    /// Send every pooled statement as the unnamed statement, with its
    /// declared parameter types, in one round trip (Parse, Bind, Execute):
    /// nothing named outlives its transaction, as a transaction pooler that
    /// does not track prepared statements needs.
    pub fn with_unnamed_statements(mut self, unnamed: bool) -> Store {
        self.unnamed = unnamed;
        self
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many statements this instance has sent so far (every path counts).
    pub fn statements(&self) -> u64 {
        self.statements.get()
    }

    /// The counter, shared with the instance's dedicated sessions.
    pub fn counter(&self) -> Counter {
        self.statements.clone()
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Run one statement on `client`: prepared (and cached), or unnamed.
    async fn rows(
        &self,
        client: &Object,
        sql: Sql,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        if self.unnamed {
            self.statements.add();
            return Ok(client.query_typed(sql.text, &typed(sql, params)).await?);
        }
        let statement = client
            .prepare_cached(sql.text)
            .await
            .map_err(pooler::hint)?;
        self.statements.add();
        Ok(client
            .query(&statement, params)
            .await
            .map_err(pooler::hint)?)
    }

    /// Run one statement on `client` (prepared and cached, or unnamed); at most one row.
    async fn row(
        &self,
        client: &Object,
        sql: Sql,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        if self.unnamed {
            self.statements.add();
            return Ok(client
                .query_typed_opt(sql.text, &typed(sql, params))
                .await?);
        }
        let statement = client
            .prepare_cached(sql.text)
            .await
            .map_err(pooler::hint)?;
        self.statements.add();
        Ok(client
            .query_opt(&statement, params)
            .await
            .map_err(pooler::hint)?)
    }

    /// One statement on a pooled connection; at most one row.
    async fn pooled_row(&self, sql: Sql, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        self.row(&client, sql, params).await
    }

    /// Insert a job; with an idempotency key already used, return that job.
    /// The flag is true when this call created the job.
    pub async fn insert(&self, new: &NewJob) -> Result<(Job, bool), StoreError> {
        let client = self.client().await?;
        let Some(key) = &new.idempotency_key else {
            let params: Params = &[&new.kind, &new.payload, &new.timeout_secs];
            let row = self.row(&client, queries::INSERT_JOB, params).await?;
            let row =
                row.ok_or_else(|| StoreError::Unavailable("the insert returned no row".into()))?;
            return Ok((job_from_row(&row), true));
        };
        // A concurrent insert of the same key may commit after our snapshot:
        // then neither branch returns a row, and a second try sees it.
        for _ in 0..3 {
            let params: Params = &[&new.kind, &new.payload, &new.timeout_secs, key];
            if let Some(row) = self.row(&client, queries::INSERT_KEYED_JOB, params).await? {
                return Ok((job_from_row(&row), row.get(10)));
            }
        }
        Err(StoreError::Unavailable(
            "idempotent insert did not settle after 3 tries".into(),
        ))
    }

    /// Read one job; an open job past its deadline is expired on the way.
    /// Reads are safe to repeat, so a connection that died under us is retried once.
    pub async fn read(&self, id: i64) -> Result<Option<ReadJob>, StoreError> {
        match self.try_read(id).await {
            Err(e) if e.is_unavailable() => self.try_read(id).await,
            other => other,
        }
    }

    async fn try_read(&self, id: i64) -> Result<Option<ReadJob>, StoreError> {
        let client = self.client().await?;
        for _ in 0..3 {
            let Some(row) = self.row(&client, queries::READ_JOB, &[&id]).await? else {
                return Ok(None);
            };
            let job = job_from_row(&row);
            if !row.get::<_, bool>(10) {
                return Ok(Some(ReadJob {
                    job,
                    expired_now: false,
                }));
            }
            if let Some(row) = self.row(&client, queries::EXPIRE_JOB, &[&id]).await? {
                return Ok(Some(ReadJob {
                    job: job_from_row(&row),
                    expired_now: true,
                }));
            }
            // Finished by someone else in between: read it again.
        }
        Err(StoreError::Unavailable(
            "reading the job did not settle".into(),
        ))
    }

    /// Read several jobs in one statement (expiring those past their deadline).
    /// Reads are safe to repeat, so a connection that died under us is retried once.
    pub async fn read_many(&self, ids: &[i64]) -> Result<Vec<ReadJob>, StoreError> {
        self.read_many_with(queries::READ_JOBS, ids).await
    }

    /// Read jobs by id as they are, expiring none: one plain indexed read,
    /// for jobs known to have ended (a `backchannel_done` notification).
    pub async fn peek_many(&self, ids: &[i64]) -> Result<Vec<Job>, StoreError> {
        let jobs = self.read_many_with(queries::PEEK_JOBS, ids).await?;
        Ok(jobs.into_iter().map(|read| read.job).collect())
    }

    async fn read_many_with(&self, sql: Sql, ids: &[i64]) -> Result<Vec<ReadJob>, StoreError> {
        let mut last = None;
        for _ in 0..2 {
            match self.try_read_many(sql, ids).await {
                Ok(jobs) => return Ok(jobs),
                Err(e) if e.is_unavailable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("loop ran"))
    }

    async fn try_read_many(&self, sql: Sql, ids: &[i64]) -> Result<Vec<ReadJob>, StoreError> {
        let client = self.client().await?;
        let rows = self.rows(&client, sql, &[&ids]).await?;
        Ok(rows
            .iter()
            .map(|row| ReadJob {
                job: job_from_row(row),
                expired_now: row.get(10),
            })
            .collect())
    }

    /// Record the first answer of an open job; `None` when it is not open
    /// (terminal, past its deadline or unknown: read it to find out).
    pub async fn answer(&self, id: i64, answer: &Answer) -> Result<Option<Job>, StoreError> {
        let (result, error) = answer_parts(answer);
        let state = answer.state().as_str();
        let row = self
            .pooled_row(queries::ANSWER_JOB, &[&id, &state, &result, &error])
            .await?;
        Ok(row.as_ref().map(job_from_row))
    }

    /// Whether the job already carries exactly this answer (a replay).
    pub async fn answer_matches(&self, id: i64, answer: &Answer) -> Result<bool, StoreError> {
        let (result, error) = answer_parts(answer);
        let state = answer.state().as_str();
        let row = self
            .pooled_row(queries::ANSWER_MATCHES, &[&id, &state, &result, &error])
            .await?;
        Ok(row
            .and_then(|row| row.get::<_, Option<bool>>(0))
            .unwrap_or(false))
    }

    /// Cancel an open job; `None` when it is not open.
    pub async fn cancel(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = self.pooled_row(queries::CANCEL_JOB, &[&id]).await?;
        Ok(row.as_ref().map(job_from_row))
    }

    /// Send notifications for finished jobs and, if asked, one new-job hint,
    /// all in one transaction (one notifying commit for the whole batch).
    pub async fn notify(&self, done: &[i64], new: bool) -> Result<(), StoreError> {
        self.pooled_row(queries::NOTIFY_BATCH, &[&done, &new])
            .await?;
        Ok(())
    }

    /// The backend holding the stream lock, if any.
    pub async fn holder(&self) -> Result<Option<Holder>, StoreError> {
        let row = self
            .pooled_row(queries::CURRENT_HOLDER, &[&LOCK_NAMESPACE, &LOCK_STREAM])
            .await?;
        Ok(row.map(|row| Holder {
            pid: row.get(0),
            listener_id: row.get(1),
            instance: row.get(2),
            since: row.get(3),
        }))
    }

    /// Jobs by state and the age of the oldest pending job (seconds).
    pub async fn stats(&self) -> Result<(Value, Option<f64>), StoreError> {
        let row = self.pooled_row(queries::STATS, &[]).await?;
        let row = row.ok_or_else(|| StoreError::Unavailable("stats returned no row".into()))?;
        Ok((row.get(0), row.get(1)))
    }

    /// PostgreSQL's notification queue usage (0..1).
    pub async fn notification_queue_usage(&self) -> Result<f64, StoreError> {
        let row = self
            .pooled_row(queries::NOTIFICATION_QUEUE_USAGE, &[])
            .await?;
        Ok(row.map_or(0.0, |row| row.get(0)))
    }

    /// The database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pooled_row(queries::PING, &[]).await?;
        Ok(())
    }

    /// One reaper tick, in one transaction, if no other instance is reaping:
    /// expire open jobs past their deadline (notifying each) and delete
    /// terminal jobs older than `retention_secs`. `None` when another instance
    /// holds the tick.
    pub async fn reap(
        &self,
        retention_secs: f64,
        batch: i64,
    ) -> Result<Option<Reaped>, StoreError> {
        let client = self.client().await?;
        self.statements.add();
        let sql = queries::reap_tick(LOCK_NAMESPACE, LOCK_REAPER, batch, retention_secs);
        let messages = client.simple_query(&sql).await?;
        let mut reaped = Reaped::default();
        let mut mine = false;
        for message in &messages {
            let SimpleQueryMessage::Row(row) = message else {
                continue;
            };
            mine = row.get(0) == Some("t");
            let number = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
            match row.get(1).and_then(|v| v.parse::<i64>().ok()) {
                Some(id) => {
                    reaped.expired.push(id);
                    reaped.ages.push(number(2).unwrap_or(0.0));
                }
                None => reaped.deleted = number(2).unwrap_or(0.0) as u64,
            }
        }
        Ok(mine.then_some(reaped))
    }
}

/// Check that `client` is a real session: the same backend across statements,
/// LISTEN and session advisory locks persisting between them. Returns what is
/// wrong, if anything.
pub async fn probe_session(client: &Client) -> Result<Option<&'static str>, tokio_postgres::Error> {
    let first: i32 = client.query_one(queries::BACKEND_PID, &[]).await?.get(0);
    let second: i32 = client.query_one(queries::BACKEND_PID, &[]).await?.get(0);
    if first != second {
        return Ok(Some("consecutive statements ran on different backends"));
    }
    client.batch_execute(queries::PROBE_LISTEN).await?;
    let listening: bool = client
        .query_one(queries::PROBE_LISTENING, &[])
        .await?
        .get(0);
    client.batch_execute(queries::PROBE_UNLISTEN).await?;
    if !listening {
        return Ok(Some("LISTEN did not persist to the next statement"));
    }
    let keys: [&(dyn ToSql + Sync); 2] = [&queries::LOCK_PROBE_NAMESPACE, &first];
    client.query_one(queries::PROBE_LOCK, &keys).await?;
    let held: i64 = client
        .query_one(queries::PROBE_LOCK_HELD, &keys)
        .await?
        .get(0);
    client.query_one(queries::PROBE_UNLOCK, &keys).await?;
    if held != 1 {
        return Ok(Some(
            "a session advisory lock did not persist to the next statement",
        ));
    }
    Ok(None)
}

/// Parameters with the types declared for their statement.
fn typed<'a>(sql: Sql, params: Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    debug_assert_eq!(params.len(), sql.types.len(), "types of {}", sql.text);
    params
        .iter()
        .copied()
        .zip(sql.types.iter().cloned())
        .collect()
}

fn answer_parts(answer: &Answer) -> (Option<&Value>, Option<&Value>) {
    match answer {
        Answer::Result(v) => (Some(v), None),
        Answer::Error(v) => (None, Some(v)),
    }
}
