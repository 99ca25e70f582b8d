//! Rows of `backchannel.jobs` into the contract's types.

use tokio_postgres::Row;

use crate::job::{Job, JobEvent, JobState};

/// A job from a row with the columns of `queries::job_columns!`.
pub fn job_from_row(row: &Row) -> Job {
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

/// A stream event from a row of the claim (id, kind, payload, deadline, attempts).
pub fn event_from_row(row: &Row) -> JobEvent {
    JobEvent {
        id: row.get(0),
        kind: row.get(1),
        payload: row.get(2),
        deadline: row.get(3),
        attempt: row.get(4),
    }
}
