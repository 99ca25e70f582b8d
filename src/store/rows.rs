//! Rows of `backchannel.jobs` into the contract's types. Rows may have been
//! written by another application through SQL, so nothing here panics: a
//! value that cannot be read is an error naming the job and the column. JSON
//! columns are taken as their stored text (no depth limit, numbers exact);
//! the timestamps come clamped to what RFC 3339 can write (`sql::job_columns!`).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Json};

use super::StoreError;
use crate::job::{Job, JobEvent, JobState};

/// Column `index` of `row`, or an error naming it (and the job, if known).
pub fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index).map_err(|error| {
        let id: Option<i64> = row.try_get(0).ok();
        let name = row.columns().get(index).map_or("?", |c| c.name());
        StoreError::Undecodable(match id {
            Some(id) if index != 0 => format!("job {id}: column {name}: {error}"),
            _ => format!("column {name}: {error}"),
        })
    })
}

fn json(row: &Row, index: usize) -> Result<Box<RawValue>, StoreError> {
    Ok(column::<Json<Box<RawValue>>>(row, index)?.0)
}

fn optional_json(row: &Row, index: usize) -> Result<Option<Box<RawValue>>, StoreError> {
    Ok(column::<Option<Json<Box<RawValue>>>>(row, index)?.map(|j| j.0))
}

/// How many columns `sql::job_columns!` names: a statement's own columns
/// after them start here.
pub const JOB_COLUMNS: usize = 11;

/// A job from a row with the columns of `sql::job_columns!`.
pub fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    job_at(row, 0)
}

/// A job from the columns of `sql::job_columns!` starting at `at`.
pub fn job_at(row: &Row, at: usize) -> Result<Job, StoreError> {
    let state: &str = column(row, at + 2)?;
    let state = JobState::parse(state).ok_or_else(|| {
        StoreError::Undecodable(format!(
            "job {:?}: unknown state",
            row.try_get::<_, i64>(at).ok()
        ))
    })?;
    Ok(Job {
        id: column(row, at)?,
        kind: column(row, at + 1)?,
        state,
        payload: json(row, at + 3)?,
        result: optional_json(row, at + 4)?,
        error: optional_json(row, at + 5)?,
        attempts: column(row, at + 6)?,
        created_at: column::<DateTime<Utc>>(row, at + 7)?,
        deadline: column(row, at + 8)?,
        completed_at: column(row, at + 9)?,
        channel: column(row, at + 10)?,
    })
}

/// A stream event from a row of the claim (id, kind, payload, deadline, attempts).
pub fn event_from_row(row: &Row) -> Result<JobEvent, StoreError> {
    Ok(JobEvent {
        id: column(row, 0)?,
        kind: column(row, 1)?,
        payload: json(row, 2)?,
        deadline: column(row, 3)?,
        attempt: column(row, 4)?,
    })
}

/// A flag column the broker's own statement computes.
pub fn flag(row: &Row, index: usize) -> Result<bool, StoreError> {
    column(row, index)
}

/// An id column the broker's own statement returns.
pub fn flag_id(row: &Row) -> Result<i64, StoreError> {
    column(row, 0)
}
