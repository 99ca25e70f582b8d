//! Reading jobs by id: one (the common case, a plain indexed read), or many
//! in one statement; an open job past its deadline is expired on the way
//! (the caller then announces it). Reads are safe to repeat: a connection
//! that died under one is retried once.

use super::rows::{JOB_COLUMNS, flag, job_from_row};
use super::sql::Sql;
use super::sql::jobs::{EXPIRE_JOB, PEEK_JOBS, READ_JOB, READ_JOBS};
use super::{Store, StoreError};
use crate::job::Job;

/// A job read by id, and whether this read expired it (then notify).
#[derive(Debug, Clone)]
pub struct ReadJob {
    pub job: Job,
    pub expired_now: bool,
}

impl Store {
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
            let Some(row) = self.db.row(&client, READ_JOB, &[&id]).await? else {
                return Ok(None);
            };
            let job = job_from_row(&row)?;
            if !flag(&row, JOB_COLUMNS)? {
                return Ok(Some(ReadJob {
                    job,
                    expired_now: false,
                }));
            }
            if let Some(row) = self.db.row(&client, EXPIRE_JOB, &[&id]).await? {
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
        self.read_many_with(READ_JOBS, ids).await
    }

    /// Read jobs by id as they are, expiring none: one plain indexed read,
    /// for jobs known to have ended (a `backchannel_done` notification).
    pub async fn peek_many(&self, ids: &[i64]) -> Result<Vec<Job>, StoreError> {
        let jobs = self.read_many_with(PEEK_JOBS, ids).await?;
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
                    expired_now: flag(row, JOB_COLUMNS)?,
                })
            })
            .collect()
    }
}
