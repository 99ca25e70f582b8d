//! Ending jobs: answers and cancels that arrive while one batch is in
//! flight are stored together, in one statement that also sends each ended
//! job's `backchannel_done` in its commit (group commit, as inserts); a job
//! the stream cannot send is ended on its own; and whether a job already
//! carries a given answer (a replay).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::batch::fail;
use super::pooled::Pooled;
use super::rows::{column, job_from_row};
use super::sql::jobs::{ANSWER_MATCHES, FAIL_UNDELIVERABLE, FINISH_JOBS};
use super::{Store, StoreError, gone};
use crate::job::{Answer, Job, JobState};

/// One terminal transition: an answer, or (without one) a cancel.
pub struct Finish {
    pub id: i64,
    pub answer: Option<Arc<Answer>>,
}

impl Store {
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
            .one(ANSWER_MATCHES, &[&id, &state, &result, &error])
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
        let row = self.db.one(FAIL_UNDELIVERABLE, &[&id, error]).await?;
        row.as_ref().map(job_from_row).transpose()
    }
}

type Finished = Result<Option<Job>, StoreError>;

/// End a batch of jobs; one outcome per request, in order. A job named twice
/// in a batch is ended by its first request; the others find it ended.
pub(super) async fn batch(db: &Pooled, batch: Vec<Finish>) -> Vec<Finished> {
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
        .all(FINISH_JOBS, &[&ids, &states, &results, &errors])
        .await?;
    rows.iter().map(job_from_row).collect()
}

fn answer_parts(answer: &Answer) -> (Option<&Value>, Option<&Value>) {
    match answer {
        Answer::Result(v) => (Some(v), None),
        Answer::Error(v) => (None, Some(v)),
    }
}
