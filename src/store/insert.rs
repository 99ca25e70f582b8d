//! Storing new jobs: inserts that arrive while one is in flight are stored
//! together, in one statement and one transaction (group commit, over the
//! generic [`Batcher`](super::batch::Batcher)). Every request keeps its own
//! outcome: its own job, or the first job of a repeated key.
//!
//! One request's trouble stays its own:
//! - a request whose idempotency key another session holds (an open
//!   transaction that submitted it) is not waited for in the batch: it runs
//!   on its own afterwards, and only it waits;
//! - a row that cannot be read back fails only its own request, after the
//!   commit: nothing is ever inserted twice;
//! - a batch the database refuses (nothing of it stored) is run again one
//!   request at a time, so that one bad row fails only itself; a batch whose
//!   connection is lost gives each request the same clear error;
//! - a full notification queue (SQLSTATE 54000) never fails a write: the
//!   batch is stored without its NOTIFY, and says so (`notified`).

use std::sync::Arc;

use serde_json::Value;

use super::batch::{Settled, fail};
use super::pooled::Pooled;
use super::rows::{JOB_COLUMNS, column, flag, flag_id, job_at};
use super::sql::LOCK_KEY_NAMESPACE;
use super::sql::jobs::{FIND_KEY, INSERT_JOBS};
use super::{Store, StoreError};
use crate::job::{ChannelId, Job, NewJob, NewJobWake};

/// How often a request run on its own is tried when its key's job is not
/// yet visible (a concurrent transaction committed it after this
/// statement's snapshot).
const TRIES: usize = 3;

/// One insert: the job, and how it reaches the stream
/// ([`NewJobWake::InCommit`]: its commit sends `NOTIFY backchannel_new`).
#[derive(Clone)]
pub struct Insert {
    pub new: Arc<NewJob>,
    pub wake: NewJobWake,
}

/// A stored job: the job, whether this request created it, and whether the
/// `NOTIFY backchannel_new` its wake asked for left with the commit (false
/// when the notification queue was full: the caller wakes the stream some
/// other way).
#[derive(Debug, Clone)]
pub struct Inserted {
    pub job: Job,
    pub created: bool,
    pub notified: bool,
}

type Outcome = Result<Inserted, StoreError>;

impl Store {
    /// Insert a job; with an idempotency key already used, return that job.
    /// Inserts that arrive while one is in flight are stored together (group
    /// commit). With `wake` [`NewJobWake::InCommit`], the commit also sends
    /// `NOTIFY backchannel_new` (once for the whole batch) if it can.
    pub async fn insert(&self, new: NewJob, wake: NewJobWake) -> Outcome {
        let insert = Insert {
            new: Arc::new(new),
            wake,
        };
        match self.inserts.call(insert.clone()).await? {
            Settled::Now(outcome) => outcome,
            Settled::Alone => {
                self.insert_alone.inc();
                let _turn = self.alone_turn().await;
                alone(&self.db, &insert).await
            }
        }
    }

    /// The id of the job with this idempotency key on `channel`, if any.
    pub async fn find_key(&self, key: &str, channel: ChannelId) -> Result<Option<i64>, StoreError> {
        let row = self.db.one(FIND_KEY, &[&key, &channel]).await?;
        row.map(|row| flag_id(&row)).transpose()
    }
}

/// Insert a batch of jobs; one outcome per request, in order.
pub(super) async fn batch(db: &Pooled, batch: Vec<Insert>) -> Vec<Settled<Inserted>> {
    let mut outcomes: Vec<Option<Settled<Inserted>>> = batch.iter().map(|_| None).collect();
    let all: Vec<usize> = (0..batch.len()).collect();
    match insert_rows(db, &batch, &all, false).await {
        Ok(rows) => {
            for (i, outcome) in rows {
                outcomes[i] = Some(Settled::Now(outcome));
            }
        }
        Err(error) if error.is_unavailable() || all.len() == 1 => fail(&all, &error, &mut outcomes),
        Err(_) => {
            // The database refused the batch: nothing of it was stored. Each
            // request on its own, so that one bad row fails only itself.
            for i in all {
                match insert_rows(db, &batch, &[i], false).await {
                    Ok(rows) => {
                        for (i, outcome) in rows {
                            outcomes[i] = Some(Settled::Now(outcome));
                        }
                    }
                    Err(error) => fail(&[i], &error, &mut outcomes),
                }
            }
        }
    }
    // No row: its key is busy in another session, or its job not yet
    // visible; either way it goes on its own.
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Settled::Alone))
        .collect()
}

/// One request on its own, waiting for its key's lock if another session
/// holds it.
async fn alone(db: &Pooled, insert: &Insert) -> Outcome {
    let one = std::slice::from_ref(insert);
    for _ in 0..TRIES {
        if let Some((_, outcome)) = insert_rows(db, one, &[0], true).await?.pop() {
            return outcome;
        }
    }
    Err(StoreError::Unavailable(format!(
        "the insert did not settle after {TRIES} tries"
    )))
}

/// One statement for the requests `which` of `batch`: the outcome of each
/// request that got a row, decoded one by one after the commit. A full
/// notification queue: the same statement again without its NOTIFY (the
/// first did nothing).
async fn insert_rows(
    db: &Pooled,
    batch: &[Insert],
    which: &[usize],
    wait: bool,
) -> Result<Vec<(usize, Outcome)>, StoreError> {
    let wanted = which.iter().any(|&i| batch[i].wake == NewJobWake::InCommit);
    match run(db, batch, which, wait, wanted).await {
        Err(error) if wanted && error.is_notify_queue_full() => {
            tracing::warn!(
                "PostgreSQL's notification queue is full: jobs stored without their \
                 NOTIFY backchannel_new (the notifier sends it once the queue drains)"
            );
            run(db, batch, which, wait, false).await
        }
        result => result,
    }
}

async fn run(
    db: &Pooled,
    batch: &[Insert],
    which: &[usize],
    wait: bool,
    notify: bool,
) -> Result<Vec<(usize, Outcome)>, StoreError> {
    let kinds: Vec<&str> = which.iter().map(|&i| batch[i].new.kind.as_str()).collect();
    let payloads: Vec<&Value> = which.iter().map(|&i| &batch[i].new.payload).collect();
    let seconds: Vec<f64> = which.iter().map(|&i| batch[i].new.timeout_secs).collect();
    let keys: Vec<Option<&str>> = which
        .iter()
        .map(|&i| batch[i].new.idempotency_key.as_deref())
        .collect();
    let streams: Vec<Option<i64>> = which
        .iter()
        .map(|&i| match batch[i].wake {
            NewJobWake::Claimed(stream) => Some(stream),
            _ => None,
        })
        .collect();
    let notifies: Vec<bool> = which
        .iter()
        .map(|&i| notify && batch[i].wake == NewJobWake::InCommit)
        .collect();
    let channels: Vec<ChannelId> = which.iter().map(|&i| batch[i].new.channel).collect();
    let rows = db
        .all(
            INSERT_JOBS,
            &[
                &kinds,
                &payloads,
                &seconds,
                &keys,
                &notifies,
                &wait,
                &LOCK_KEY_NAMESPACE,
                &streams,
                &channels,
            ],
        )
        .await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in &rows {
        let n: i64 = column(row, 0)?;
        let request = usize::try_from(n - 1)
            .ok()
            .and_then(|at| which.get(at).copied())
            .ok_or_else(|| StoreError::Undecodable(format!("no request {n} in the batch")))?;
        let outcome = job_at(row, 1).and_then(|job| {
            let created = flag(row, 1 + JOB_COLUMNS)?;
            let notified = created && notify && batch[request].wake == NewJobWake::InCommit;
            Ok(Inserted {
                job,
                created,
                notified,
            })
        });
        outcomes.push((request, outcome));
    }
    Ok(outcomes)
}
