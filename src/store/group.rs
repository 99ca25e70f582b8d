//! The group-commit statements: a batch of inserts, and a batch of terminal
//! transitions (answers and cancels), each in one statement. Every request
//! keeps its own outcome: its own job, the first job of a repeated key, or
//! `None` for a job that was not open. One bad row never fails the others (a
//! batch the database refuses is run again one request at a time); a batch
//! whose connection is lost gives each request a clear error.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::StoreError;
use super::pooled::Pooled;
use super::queries;
use super::rows::{column, flag, job_at, job_from_row};
use crate::job::{Answer, Job, JobState, NewJob};

/// How often a request whose key's job is not yet visible is tried again (a
/// concurrent transaction committed it after this statement's snapshot).
const TRIES: usize = 3;

/// One insert: the job, and whether its commit should wake a stream held by
/// another instance (`NOTIFY backchannel_new`).
pub struct Insert {
    pub new: NewJob,
    pub notify_new: bool,
}

/// One terminal transition: an answer, or (without one) a cancel.
pub struct Finish {
    pub id: i64,
    pub answer: Option<Arc<Answer>>,
}

type Inserted = Result<(Job, bool), StoreError>;

/// Insert a batch of jobs; one outcome per request, in order.
pub async fn insert(db: &Pooled, batch: Vec<Insert>) -> Vec<Inserted> {
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
    let notify = which.iter().any(|&i| batch[i].notify_new);
    let rows = db
        .all(
            queries::INSERT_JOBS,
            &[&kinds, &payloads, &seconds, &keys, &notify],
        )
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

type Finished = Result<Option<Job>, StoreError>;

/// End a batch of jobs; one outcome per request, in order. A job named twice
/// in a batch is ended by its first request; the others find it ended.
pub async fn finish(db: &Pooled, batch: Vec<Finish>) -> Vec<Finished> {
    let mut outcomes: Vec<Option<Finished>> = batch.iter().map(|_| None).collect();
    let mut first: HashMap<i64, usize> = HashMap::new();
    for (i, change) in batch.iter().enumerate() {
        match first.entry(change.id) {
            std::collections::hash_map::Entry::Occupied(_) => outcomes[i] = Some(Ok(None)),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    let unique: Vec<usize> = first.into_values().collect();
    match finish_rows(db, &batch, &unique).await {
        Ok(ended) => settle_finished(&batch, &unique, ended, &mut outcomes),
        Err(error) if error.is_unavailable() || unique.len() == 1 => {
            fail(&unique, error, &mut outcomes)
        }
        Err(_) => {
            // Refused as a whole: each request on its own.
            for i in unique {
                match finish_rows(db, &batch, &[i]).await {
                    Ok(ended) => settle_finished(&batch, &[i], ended, &mut outcomes),
                    Err(error) => fail(&[i], error, &mut outcomes),
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Ok(None)))
        .collect()
}

/// Give each of `which` its ended job, or `None` (it was not open).
fn settle_finished(
    batch: &[Finish],
    which: &[usize],
    ended: Vec<Job>,
    outcomes: &mut [Option<Finished>],
) {
    let mut by_id: HashMap<i64, Job> = ended.into_iter().map(|job| (job.id, job)).collect();
    for &i in which {
        outcomes[i] = Some(Ok(by_id.remove(&batch[i].id)));
    }
}

/// One statement ending the jobs of `which` (each id once).
async fn finish_rows(
    db: &Pooled,
    batch: &[Finish],
    which: &[usize],
) -> Result<Vec<Job>, StoreError> {
    let mut ids = Vec::with_capacity(which.len());
    let mut states = Vec::with_capacity(which.len());
    let mut results: Vec<Option<&Value>> = Vec::with_capacity(which.len());
    let mut errors: Vec<Option<&Value>> = Vec::with_capacity(which.len());
    for &i in which {
        let change = &batch[i];
        ids.push(change.id);
        let (state, result, error) = match change.answer.as_deref() {
            None => (JobState::Cancelled, None, None),
            Some(Answer::Result(value)) => (JobState::Done, Some(value), None),
            Some(Answer::Error(value)) => (JobState::Failed, None, Some(value)),
        };
        states.push(state.as_str());
        results.push(result);
        errors.push(error);
    }
    let rows = db
        .all(queries::FINISH_JOBS, &[&ids, &states, &results, &errors])
        .await?;
    rows.iter().map(job_from_row).collect()
}

/// Every request of `which` without an outcome yet gets `error` (the first
/// the error itself, the others its description: their outcome is the same).
fn fail<T>(which: &[usize], error: StoreError, outcomes: &mut [Option<Result<T, StoreError>>]) {
    let text = error.to_string();
    let mut error = Some(error);
    for &i in which {
        if outcomes[i].is_some() {
            continue;
        }
        let this = match error.take() {
            Some(error) => error,
            None => StoreError::Unavailable(text.clone()),
        };
        outcomes[i] = Some(Err(this));
    }
}
