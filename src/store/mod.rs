//! All database calls. Handlers and the domain never see SQL.

pub mod queries;

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool, PoolError};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, SimpleQueryMessage, Statement};

use crate::job::{Answer, Job, JobEvent, JobState};

pub use queries::{LOCK_MIGRATE, LOCK_NAMESPACE, LOCK_REAPER, LOCK_STREAM};

/// A database failure, split by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (down, restarting, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Query(#[source] tokio_postgres::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let lost = error.is_closed()
            || match error.code() {
                None => true,
                Some(code) => {
                    code.code().starts_with("08")
                        || *code == SqlState::ADMIN_SHUTDOWN
                        || *code == SqlState::CRASH_SHUTDOWN
                        || *code == SqlState::CANNOT_CONNECT_NOW
                }
            };
        if lost {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Query(error)
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// A new job as validated by the edge.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub timeout_secs: f64,
    pub idempotency_key: Option<String>,
}

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

/// The query pool and a count of the statements the broker sent.
pub struct Store {
    pool: Pool,
    statements: AtomicU64,
}

impl Store {
    pub fn new(pool: Pool) -> Store {
        Store {
            pool,
            statements: AtomicU64::new(0),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many statements this instance has sent so far (every path counts).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Run one prepared (and cached) statement on a pooled connection; at most
    /// one row.
    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        self.count();
        Ok(client.query_opt(&statement, params).await?)
    }

    /// Insert a job; with an idempotency key already used, return that job.
    /// The flag is true when this call created the job.
    pub async fn insert(&self, new: &NewJob) -> Result<(Job, bool), StoreError> {
        let client = self.client().await?;
        let Some(key) = &new.idempotency_key else {
            let statement = client.prepare_cached(queries::INSERT_JOB).await?;
            self.count();
            let row = client
                .query_one(&statement, &[&new.kind, &new.payload, &new.timeout_secs])
                .await?;
            return Ok((job_from_row(&row), true));
        };
        let statement = client.prepare_cached(queries::INSERT_KEYED_JOB).await?;
        // A concurrent insert of the same key may commit after our snapshot:
        // then neither branch returns a row, and a second try sees it.
        for _ in 0..3 {
            self.count();
            let rows = client
                .query(
                    &statement,
                    &[&new.kind, &new.payload, &new.timeout_secs, key],
                )
                .await?;
            if let Some(row) = rows.first() {
                return Ok((job_from_row(row), row.get(10)));
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
        let read = client.prepare_cached(queries::READ_JOB).await?;
        for _ in 0..3 {
            self.count();
            let Some(row) = client.query_opt(&read, &[&id]).await? else {
                return Ok(None);
            };
            let job = job_from_row(&row);
            if !row.get::<_, bool>(10) {
                return Ok(Some(ReadJob {
                    job,
                    expired_now: false,
                }));
            }
            let expire = client.prepare_cached(queries::EXPIRE_JOB).await?;
            self.count();
            if let Some(row) = client.query_opt(&expire, &[&id]).await? {
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

    async fn read_many_with(&self, sql: &str, ids: &[i64]) -> Result<Vec<ReadJob>, StoreError> {
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

    async fn try_read_many(&self, sql: &str, ids: &[i64]) -> Result<Vec<ReadJob>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        self.count();
        let rows = client.query(&statement, &[&ids]).await?;
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
            .query_opt(queries::ANSWER_JOB, &[&id, &state, &result, &error])
            .await?;
        Ok(row.as_ref().map(job_from_row))
    }

    /// Whether the job already carries exactly this answer (a replay).
    pub async fn answer_matches(&self, id: i64, answer: &Answer) -> Result<bool, StoreError> {
        let (result, error) = answer_parts(answer);
        let state = answer.state().as_str();
        let row = self
            .query_opt(queries::ANSWER_MATCHES, &[&id, &state, &result, &error])
            .await?;
        Ok(row
            .and_then(|row| row.get::<_, Option<bool>>(0))
            .unwrap_or(false))
    }

    /// Cancel an open job; `None` when it is not open.
    pub async fn cancel(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = self.query_opt(queries::CANCEL_JOB, &[&id]).await?;
        Ok(row.as_ref().map(job_from_row))
    }

    /// Send notifications for finished jobs and, if asked, one new-job hint,
    /// all in one transaction (one notifying commit for the whole batch).
    pub async fn notify(&self, done: &[i64], new: bool) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(queries::NOTIFY_BATCH).await?;
        self.count();
        client.execute(&statement, &[&done, &new]).await?;
        Ok(())
    }

    /// The backend holding the stream lock, if any.
    pub async fn holder(&self) -> Result<Option<Holder>, StoreError> {
        let row = self
            .query_opt(queries::CURRENT_HOLDER, &[&LOCK_NAMESPACE, &LOCK_STREAM])
            .await?;
        Ok(row.map(|row| Holder {
            pid: row.get(0),
            listener_id: row.get(1),
            instance: row.get(2),
            since: row.get(3),
        }))
    }

    /// End another backend's session (the stale stream of a takeover).
    pub async fn terminate_backend(&self, pid: i32) -> Result<bool, StoreError> {
        let client = self.client().await?;
        self.count();
        let row = client
            .query_one(queries::TERMINATE_BACKEND, &[&pid])
            .await?;
        Ok(row.get(0))
    }

    /// Jobs by state and the age of the oldest pending job (seconds).
    pub async fn stats(&self) -> Result<(Value, Option<f64>), StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(queries::STATS).await?;
        self.count();
        let row = client.query_one(&statement, &[]).await?;
        Ok((row.get(0), row.get(1)))
    }

    /// PostgreSQL's notification queue usage (0..1).
    pub async fn notification_queue_usage(&self) -> Result<f64, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(queries::NOTIFICATION_QUEUE_USAGE)
            .await?;
        self.count();
        Ok(client.query_one(&statement, &[]).await?.get(0))
    }

    /// The database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(queries::PING).await?;
        self.count();
        client.query_one(&statement, &[]).await?;
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
        self.count();
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

    // ----- statements of the stream's own session (not pooled) -----

    /// Try to take the stream lock on `session`.
    pub async fn try_stream_lock(&self, session: &Client) -> Result<bool, StoreError> {
        self.count();
        let row = session
            .query_one(queries::TRY_STREAM_LOCK, &[&LOCK_NAMESPACE, &LOCK_STREAM])
            .await?;
        Ok(row.get(0))
    }

    /// Wait up to `timeout_ms` for the stream lock on `session`.
    pub async fn wait_stream_lock(
        &self,
        session: &Client,
        timeout_ms: u64,
    ) -> Result<bool, StoreError> {
        self.count();
        session
            .batch_execute(&format!("SET statement_timeout = {timeout_ms}"))
            .await?;
        self.count();
        let outcome = session
            .query_one(queries::WAIT_STREAM_LOCK, &[&LOCK_NAMESPACE, &LOCK_STREAM])
            .await;
        self.count();
        session.batch_execute("SET statement_timeout = 0").await?;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Record this session as the holder; returns the new stream's number.
    pub async fn register_holder(
        &self,
        session: &Client,
        listener_id: Option<&str>,
        instance: &str,
    ) -> Result<i64, StoreError> {
        self.count();
        let row = session
            .query_one(queries::REGISTER_HOLDER, &[&listener_id, &instance])
            .await?;
        Ok(row.get(0))
    }

    /// Remove this session's holder record.
    pub async fn release_holder(&self, session: &Client) -> Result<(), StoreError> {
        self.count();
        session.execute(queries::RELEASE_HOLDER, &[]).await?;
        Ok(())
    }

    /// Prepare the claim statement once per stream session.
    pub async fn prepare_claim(&self, session: &Client) -> Result<Statement, StoreError> {
        self.count();
        Ok(session.prepare(queries::CLAIM_JOBS).await?)
    }

    /// Claim up to `limit` jobs not yet sent on stream `stream_id`, oldest first.
    pub async fn claim(
        &self,
        session: &Client,
        claim: &Statement,
        stream_id: i64,
        limit: i64,
    ) -> Result<Vec<JobEvent>, StoreError> {
        self.count();
        let rows = session.query(claim, &[&stream_id, &limit]).await?;
        let mut events: Vec<JobEvent> = rows
            .iter()
            .map(|row| JobEvent {
                id: row.get(0),
                kind: row.get(1),
                payload: row.get(2),
                deadline: row.get(3),
                attempt: row.get(4),
            })
            .collect();
        events.sort_by_key(|e| e.id);
        Ok(events)
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
    let keys: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
        [&queries::LOCK_PROBE_NAMESPACE, &first];
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

fn answer_parts(answer: &Answer) -> (Option<&Value>, Option<&Value>) {
    match answer {
        Answer::Result(v) => (Some(v), None),
        Answer::Error(v) => (None, Some(v)),
    }
}

fn job_from_row(row: &Row) -> Job {
    let state: &str = row.get(2);
    Job {
        id: row.get(0),
        kind: row.get(1),
        state: JobState::parse(state).expect("state is constrained by the table"),
        payload: row.get(3),
        result: row.get(4),
        error: row.get(5),
        attempts: row.get(6),
        created_at: row.get(7),
        deadline: row.get(8),
        completed_at: row.get(9),
    }
}
