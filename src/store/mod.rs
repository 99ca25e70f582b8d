//! All database calls. Handlers and the domain never see SQL.
//!
//! - [`Store`]: the statements run on the query pool (this file), inserts and
//!   terminal transitions in groups (`group`, over the generic `batch`);
//! - [`StreamSession`]: the stream's own session, its advisory lock and claim;
//! - [`connect`]: where connections go (with [`tls`]), the pool, dedicated sessions;
//! - [`migrate`]: the numbered migrations of `sql/`; [`schema`]: serve's check of them;
//! - [`queries`]: the text of every statement.

mod batch;
pub mod connect;
mod error;
mod group;
mod health;
pub mod migrate;
mod pooled;
mod pooler;
pub mod queries;
mod rows;
pub mod schema;
mod stream_session;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::job::{Answer, Job, NewJob};

pub use connect::{Session, Target};
pub use error::StoreError;
pub use stream_session::{Claimed, StreamSession};

use batch::Batcher;
use group::{Finish, Insert};
use pooled::Pooled;
use queries::{LOCK_NAMESPACE, LOCK_REAPER, LOCK_STREAM, Sql};
use rows::{column, flag, flag_id, job_from_row};

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

/// Where the group-commit loops record how many requests each batch carried.
pub struct BatchSizes {
    pub insert: Histogram,
    pub finish: Histogram,
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

/// The query pool, a count of the statements the broker sent, and the two
/// group-commit queues (inserts; answers and cancels).
pub struct Store {
    db: Arc<Pooled>,
    inserts: Batcher<Insert, Result<(Job, bool), StoreError>>,
    finishes: Batcher<Finish, Result<Option<Job>, StoreError>>,
}

impl Store {
    /// The store over `pool`; starts the group-commit loops (they end with
    /// it), which record each batch's size in `sizes`. With `unnamed`, every
    /// pooled statement goes out as the unnamed statement, with its declared
    /// parameter types, in one round trip (Parse, Bind, Execute): nothing
    /// named outlives its transaction, as a transaction pooler that does not
    /// track prepared statements needs.
    pub fn new(pool: Pool, sizes: BatchSizes, unnamed: bool) -> Store {
        let db = Arc::new(Pooled {
            pool,
            statements: Counter::default(),
            unnamed,
        });
        let inserting = db.clone();
        let finishing = db.clone();
        Store {
            inserts: Batcher::new(move |batch| {
                sizes.insert.observe(batch.len() as f64);
                let db = inserting.clone();
                async move { group::insert(&db, batch).await }
            }),
            finishes: Batcher::new(move |batch| {
                sizes.finish.observe(batch.len() as f64);
                let db = finishing.clone();
                async move { group::finish(&db, batch).await }
            }),
            db,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.db.pool
    }

    /// How many statements this instance has sent so far (every path counts).
    pub fn statements(&self) -> u64 {
        self.db.statements.get()
    }

    /// Requests waiting for the next group commit: (inserts, answers and cancels).
    pub fn queued(&self) -> (usize, usize) {
        (self.inserts.queued(), self.finishes.queued())
    }

    /// The counter, shared with the instance's dedicated sessions.
    pub fn counter(&self) -> Counter {
        self.db.statements.clone()
    }

    /// Insert a job; with an idempotency key already used, return that job.
    /// The flag is true when this call created the job. Inserts that arrive
    /// while one is in flight are stored together (group commit). With
    /// `notify_new`, the commit also sends `NOTIFY backchannel_new`.
    pub async fn insert(&self, new: NewJob, notify_new: bool) -> Result<(Job, bool), StoreError> {
        let insert = Insert { new, notify_new };
        self.inserts
            .call(insert)
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// The id of the job with this idempotency key, if any.
    pub async fn find_key(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let row = self.db.one(queries::FIND_KEY, &[&key]).await?;
        row.map(|row| flag_id(&row)).transpose()
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
        let client = self.db.client().await?;
        for _ in 0..3 {
            let Some(row) = self.db.row(&client, queries::READ_JOB, &[&id]).await? else {
                return Ok(None);
            };
            let job = job_from_row(&row)?;
            if !flag(&row, 10)? {
                return Ok(Some(ReadJob {
                    job,
                    expired_now: false,
                }));
            }
            if let Some(row) = self.db.row(&client, queries::EXPIRE_JOB, &[&id]).await? {
                return Ok(Some(ReadJob {
                    job: job_from_row(&row)?,
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
        let client = self.db.client().await?;
        let rows = self.db.rows(&client, sql, &[&ids]).await?;
        rows.iter()
            .map(|row| {
                Ok(ReadJob {
                    job: job_from_row(row)?,
                    expired_now: flag(row, 10)?,
                })
            })
            .collect()
    }

    /// Record the first answer of an open job; `None` when it is not open
    /// (terminal, past its deadline or unknown: read it to find out).
    /// Answers and cancels that arrive while one batch is in flight are
    /// stored together (group commit).
    pub async fn answer(&self, id: i64, answer: &Arc<Answer>) -> Result<Option<Job>, StoreError> {
        let change = Finish {
            id,
            answer: Some(answer.clone()),
        };
        self.finishes
            .call(change)
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// Whether the job already carries exactly this answer (a replay).
    pub async fn answer_matches(&self, id: i64, answer: &Answer) -> Result<bool, StoreError> {
        let (result, error) = answer_parts(answer);
        let state = answer.state().as_str();
        let row = self
            .db
            .one(queries::ANSWER_MATCHES, &[&id, &state, &result, &error])
            .await?;
        let matches: Option<bool> = row.map(|row| column(&row, 0)).transpose()?.flatten();
        Ok(matches.unwrap_or(false))
    }

    /// Cancel an open job; `None` when it is not open (group commit, as answers).
    pub async fn cancel(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let change = Finish { id, answer: None };
        self.finishes
            .call(change)
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// End a job the stream cannot send: `failed`, with `error` saying why.
    /// `None` when it was no longer open.
    pub async fn fail_undeliverable(
        &self,
        id: i64,
        error: &Value,
    ) -> Result<Option<Job>, StoreError> {
        let row = self
            .db
            .one(queries::FAIL_UNDELIVERABLE, &[&id, error])
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Send notifications for finished jobs and, if asked, one new-job hint,
    /// all in one transaction (one notifying commit for the whole batch).
    pub async fn notify(&self, done: &[i64], new: bool) -> Result<(), StoreError> {
        self.db.one(queries::NOTIFY_BATCH, &[&done, &new]).await?;
        Ok(())
    }

    /// The backend holding the stream lock, if any.
    pub async fn holder(&self) -> Result<Option<Holder>, StoreError> {
        let row = self
            .db
            .one(queries::CURRENT_HOLDER, &[&LOCK_NAMESPACE, &LOCK_STREAM])
            .await?;
        row.map(|row| {
            Ok(Holder {
                pid: column(&row, 0)?,
                listener_id: column(&row, 1)?,
                instance: column(&row, 2)?,
                since: column(&row, 3)?,
            })
        })
        .transpose()
    }

    /// Jobs by state and the age of the oldest pending job (seconds).
    pub async fn stats(&self) -> Result<(Value, Option<f64>), StoreError> {
        let row = self.db.one(queries::STATS, &[]).await?;
        let row = row.ok_or_else(|| StoreError::Unavailable("stats returned no row".into()))?;
        Ok((column(&row, 0)?, column(&row, 1)?))
    }

    /// The age of the oldest pending job in seconds, if any.
    pub async fn oldest_pending_age(&self) -> Result<Option<f64>, StoreError> {
        let row = self.db.one(queries::OLDEST_PENDING_AGE, &[]).await?;
        Ok(row.map(|row| column(&row, 0)).transpose()?.flatten())
    }

    /// PostgreSQL's notification queue usage (0..1).
    pub async fn notification_queue_usage(&self) -> Result<f64, StoreError> {
        let row = self.db.one(queries::NOTIFICATION_QUEUE_USAGE, &[]).await?;
        row.map_or(Ok(0.0), |row| column(&row, 0))
    }

    /// The database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.one(queries::PING, &[]).await?;
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
        let client = self.db.client().await?;
        self.db.statements.add();
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

/// The group-commit loop is gone: only while the runtime shuts down.
fn gone() -> StoreError {
    StoreError::Unavailable("the broker is shutting down".into())
}

fn answer_parts(answer: &Answer) -> (Option<&Value>, Option<&Value>) {
    match answer {
        Answer::Result(v) => (Some(v), None),
        Answer::Error(v) => (None, Some(v)),
    }
}
