//! Ending jobs: answers and cancels that arrive while one batch is in
//! flight are stored together, in one statement that also sends each ended
//! job's `backchannel_done` in its commit (group commit, as inserts); a job
//! the stream cannot send is ended on its own; and whether a job already
//! carries a given answer (a replay).
//!
//! One request's trouble stays its own: a job row another session holds
//! locked is skipped by the batch and ended on its own afterwards (only its
//! request waits); a row that cannot be read back after the commit fails
//! only its own request ([`StoreError::EndedUnreadable`]: it did end); a full
//! notification queue never fails the write (`notified` says the NOTIFY did
//! not leave).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::batch::{Settled, fail};
use super::pooled::Pooled;
use super::rows::{column, flag, job_at, job_from_row};
use super::sql::jobs::{ANSWER_MATCHES, FAIL_UNDELIVERABLE, FINISH_JOBS, FINISH_WAITING};
use super::{Store, StoreError};
use crate::job::{Answer, Job, JobState, Scope};

/// One terminal transition: an answer, or (without one) a cancel, by a
/// client that may end jobs of the channels of `scope` only.
#[derive(Clone)]
pub struct Finish {
    pub id: i64,
    pub answer: Option<Arc<Answer>>,
    pub scope: Option<Arc<str>>,
}

/// A job this request ended, and whether its `backchannel_done` left with
/// the commit (false when the notification queue was full: the caller has
/// it sent some other way).
#[derive(Debug, Clone)]
pub struct Ended {
    pub job: Job,
    pub notified: bool,
}

/// The ended job, or `None` when it was not open (terminal, past its
/// deadline or unknown: read it to find out).
type Outcome = Result<Option<Ended>, StoreError>;

impl Store {
    /// Record the first answer of an open job; `None` when it is not open.
    /// Answers and cancels that arrive while one batch is in flight are
    /// stored together (group commit).
    /// A job outside `scope` is left as it is (`None`, as if unknown).
    pub async fn answer(&self, id: i64, answer: &Arc<Answer>, scope: &Scope) -> Outcome {
        self.finish(Finish {
            id,
            answer: Some(answer.clone()),
            scope: scope.sql(),
        })
        .await
    }

    /// Whether the job already carries exactly this answer (a replay).
    pub async fn answer_matches(&self, id: i64, answer: &Answer) -> Result<bool, StoreError> {
        let (result, error) = answer_parts(answer);
        let state = answer.state().as_str();
        let row = self
            .db
            .one(ANSWER_MATCHES, &[&id, &state, &result, &error])
            .await?;
        let matches: Option<bool> = row.map(|row| column(&row, 0)).transpose()?.flatten();
        Ok(matches.unwrap_or(false))
    }

    /// Cancel an open job; `None` when it is not open or outside `scope`
    /// (group commit, as answers).
    pub async fn cancel(&self, id: i64, scope: &Scope) -> Outcome {
        self.finish(Finish {
            id,
            answer: None,
            scope: scope.sql(),
        })
        .await
    }

    async fn finish(&self, change: Finish) -> Outcome {
        match self.finishes.call(change.clone()).await? {
            Settled::Now(outcome) => outcome,
            Settled::Alone => {
                self.finish_alone.inc();
                let _turn = self.alone_turn().await;
                alone(&self.db, &change).await
            }
        }
    }

    /// End a job the stream cannot send: `failed`, with `error` saying why.
    /// `None` when it was no longer open.
    pub async fn fail_undeliverable(
        &self,
        id: i64,
        error: &Value,
    ) -> Result<Option<Job>, StoreError> {
        let row = self.db.one(FAIL_UNDELIVERABLE, &[&id, error]).await?;
        row.as_ref().map(job_from_row).transpose()
    }
}

/// End a batch of jobs; one outcome per request, in order. A job named twice
/// in a batch is ended by its first request; the others find it ended.
pub(super) async fn batch(db: &Pooled, batch: Vec<Finish>) -> Vec<Settled<Option<Ended>>> {
    let mut outcomes: Vec<Option<Settled<Option<Ended>>>> = batch.iter().map(|_| None).collect();
    let mut first: HashMap<i64, usize> = HashMap::new();
    for (i, change) in batch.iter().enumerate() {
        match first.entry(change.id) {
            std::collections::hash_map::Entry::Occupied(_) => {
                outcomes[i] = Some(Settled::Now(Ok(None)))
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
    let unique: Vec<usize> = first.into_values().collect();
    match finish_rows(db, &batch, &unique).await {
        Ok(rows) => settle(&batch, &unique, rows, &mut outcomes),
        Err(error) if error.is_unavailable() || unique.len() == 1 => {
            fail(&unique, &error, &mut outcomes)
        }
        Err(_) => {
            // Refused as a whole (nothing of it stored): each request on its own.
            for i in unique {
                match finish_rows(db, &batch, &[i]).await {
                    Ok(rows) => settle(&batch, &[i], rows, &mut outcomes),
                    Err(error) => fail(&[i], &error, &mut outcomes),
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Settled::Now(Ok(None))))
        .collect()
}

/// What the statement said of one job.
enum Row {
    Ended(Result<Ended, StoreError>),
    Busy,
}

/// Give each of `which` its ended job, `Alone` when its row was busy, or
/// `None` (it was not open).
fn settle(
    batch: &[Finish],
    which: &[usize],
    mut rows: HashMap<i64, Row>,
    outcomes: &mut [Option<Settled<Option<Ended>>>],
) {
    for &i in which {
        outcomes[i] = Some(match rows.remove(&batch[i].id) {
            None => Settled::Now(Ok(None)),
            Some(Row::Busy) => Settled::Alone,
            Some(Row::Ended(ended)) => Settled::Now(ended.map(Some)),
        });
    }
}

/// (state, result, error) of a change.
fn parts(change: &Finish) -> (&'static str, Option<&Value>, Option<&Value>) {
    let (state, result, error) = match change.answer.as_deref() {
        None => (JobState::Cancelled, None, None),
        Some(Answer::Result(value)) => (JobState::Done, Some(value), None),
        Some(Answer::Error(value)) => (JobState::Failed, None, Some(value)),
    };
    (state.as_str(), result, error)
}

/// One statement ending the jobs of `which` (each id once), skipping rows
/// another session holds; again without NOTIFY when the queue is full.
async fn finish_rows(
    db: &Pooled,
    batch: &[Finish],
    which: &[usize],
) -> Result<HashMap<i64, Row>, StoreError> {
    let mut ids = Vec::with_capacity(which.len());
    let mut states = Vec::with_capacity(which.len());
    let mut results: Vec<Option<&Value>> = Vec::with_capacity(which.len());
    let mut errors: Vec<Option<&Value>> = Vec::with_capacity(which.len());
    let mut scopes: Vec<Option<&str>> = Vec::with_capacity(which.len());
    for &i in which {
        let (state, result, error) = parts(&batch[i]);
        ids.push(batch[i].id);
        states.push(state);
        results.push(result);
        errors.push(error);
        scopes.push(batch[i].scope.as_deref());
    }
    let mut notify = true;
    let rows = loop {
        match db
            .all(
                FINISH_JOBS,
                &[&ids, &states, &results, &errors, &notify, &scopes],
            )
            .await
        {
            Err(error) if notify && error.is_notify_queue_full() => {
                queue_full();
                notify = false;
            }
            result => break result?,
        }
    };
    let mut by_id = HashMap::with_capacity(rows.len());
    for row in &rows {
        let ended = flag(row, 0)?;
        let id: i64 = column(row, 1)?;
        let what = if ended {
            Row::Ended(
                job_at(row, 1)
                    .map(|job| Ended {
                        job,
                        notified: notify,
                    })
                    .map_err(|cause| StoreError::EndedUnreadable {
                        id,
                        cause: cause.to_string(),
                    }),
            )
        } else {
            Row::Busy
        };
        by_id.insert(id, what);
    }
    Ok(by_id)
}

/// One change on its own, waiting for its row's lock.
async fn alone(db: &Pooled, change: &Finish) -> Outcome {
    let (state, result, error) = parts(change);
    let mut notify = true;
    let row = loop {
        match db
            .one(
                FINISH_WAITING,
                &[
                    &change.id,
                    &state,
                    &result,
                    &error,
                    &notify,
                    &change.scope.as_deref(),
                ],
            )
            .await
        {
            Err(error) if notify && error.is_notify_queue_full() => {
                queue_full();
                notify = false;
            }
            result => break result?,
        }
    };
    let Some(row) = row else { return Ok(None) };
    let job = job_from_row(&row).map_err(|cause| StoreError::EndedUnreadable {
        id: change.id,
        cause: cause.to_string(),
    })?;
    Ok(Some(Ended {
        job,
        notified: notify,
    }))
}

fn queue_full() {
    tracing::warn!(
        "PostgreSQL's notification queue is full: jobs ended without their NOTIFY \
         backchannel_done (the notifier sends it once the queue drains)"
    );
}

fn answer_parts(answer: &Answer) -> (Option<&Value>, Option<&Value>) {
    match answer {
        Answer::Result(v) => (Some(v), None),
        Answer::Error(v) => (None, Some(v)),
    }
}
