//! Storing new jobs: inserts that arrive while one is in flight are stored
//! together, in one statement and one transaction (group commit, over the
//! generic [`Batcher`](super::batch::Batcher)). Every request keeps its own
//! outcome: its own job, or the first job of a repeated key. One bad row
//! never fails the others (a batch the database refuses is run again one
//! request at a time); a batch whose connection is lost gives each request a
//! clear error.

use serde_json::Value;

use super::batch::fail;
use super::pooled::Pooled;
use super::rows::{column, flag, flag_id, job_at};
use super::sql::jobs::{FIND_KEY, INSERT_JOBS};
use super::{Store, StoreError, gone};
use crate::job::{Job, NewJob, NewJobWake};

/// How often a request whose key's job is not yet visible is tried again (a
/// concurrent transaction committed it after this statement's snapshot).
const TRIES: usize = 3;

/// One insert: the job, and how it reaches the stream
/// ([`NewJobWake::InCommit`]: its commit sends `NOTIFY backchannel_new`).
pub struct Insert {
    pub new: NewJob,
    pub wake: NewJobWake,
}

impl Store {
    /// Insert a job; with an idempotency key already used, return that job.
    /// The flag is true when this call created the job. Inserts that arrive
    /// while one is in flight are stored together (group commit). With
    /// `wake` [`NewJobWake::InCommit`], the commit also sends
    /// `NOTIFY backchannel_new` (once for the whole batch).
    pub async fn insert(&self, new: NewJob, wake: NewJobWake) -> Result<(Job, bool), StoreError> {
        let insert = Insert { new, wake };
        self.inserts
            .call(insert)
            .await
            .unwrap_or_else(|| Err(gone()))
    }

    /// The id of the job with this idempotency key, if any.
    pub async fn find_key(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let row = self.db.one(FIND_KEY, &[&key]).await?;
        row.map(|row| flag_id(&row)).transpose()
    }
}

type Inserted = Result<(Job, bool), StoreError>;

/// Insert a batch of jobs; one outcome per request, in order.
pub(super) async fn batch(db: &Pooled, batch: Vec<Insert>) -> Vec<Inserted> {
    let mut outcomes: Vec<Option<Inserted>> = batch.iter().map(|_| None).collect();
    let all: Vec<usize> = (0..batch.len()).collect();
    if let Err(error) = insert_some(db, &batch, &all, &mut outcomes).await {
        if error.is_unavailable() || all.len() == 1 {
            fail(&all, error, &mut outcomes);
        } else {
            // The database refused the batch: nothing of it was stored. Each
            // request on its own, so that one bad row fails only itself.
            for i in all {
                if let Err(error) = insert_some(db, &batch, &[i], &mut outcomes).await {
                    fail(&[i], error, &mut outcomes);
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                Err(StoreError::Unavailable(format!(
                    "the insert did not settle after {TRIES} tries"
                )))
            })
        })
        .collect()
}

/// Insert the requests `pending` of `batch`, trying again those whose key's
/// job is not yet visible; fills their outcomes.
async fn insert_some(
    db: &Pooled,
    batch: &[Insert],
    pending: &[usize],
    outcomes: &mut [Option<Inserted>],
) -> Result<(), StoreError> {
    let mut pending = pending.to_vec();
    for _ in 0..TRIES {
        for (i, job, created) in insert_rows(db, batch, &pending).await? {
            outcomes[i] = Some(Ok((job, created)));
        }
        pending.retain(|&i| outcomes[i].is_none());
        if pending.is_empty() {
            break;
        }
    }
    Ok(())
}

/// One statement for the requests `which` of `batch`: (request, job, created).
async fn insert_rows(
    db: &Pooled,
    batch: &[Insert],
    which: &[usize],
) -> Result<Vec<(usize, Job, bool)>, StoreError> {
    let kinds: Vec<&str> = which.iter().map(|&i| batch[i].new.kind.as_str()).collect();
    let payloads: Vec<&Value> = which.iter().map(|&i| &batch[i].new.payload).collect();
    let seconds: Vec<f64> = which.iter().map(|&i| batch[i].new.timeout_secs).collect();
    let keys: Vec<Option<&str>> = which
        .iter()
        .map(|&i| batch[i].new.idempotency_key.as_deref())
        .collect();
    let notify = which.iter().any(|&i| batch[i].wake == NewJobWake::InCommit);
    let rows = db
        .all(INSERT_JOBS, &[&kinds, &payloads, &seconds, &keys, &notify])
        .await?;
    rows.iter()
        .map(|row| {
            let n: i64 = column(row, 0)?;
            let request = usize::try_from(n - 1)
                .ok()
                .and_then(|at| which.get(at).copied())
                .ok_or_else(|| StoreError::Undecodable(format!("no request {n} in the batch")))?;
            Ok((request, job_at(row, 1)?, flag(row, 11)?))
        })
        .collect()
}
