//! Submitting a job: store it (or find the one with the same idempotency key),
//! wake the stream, and optionally wait for its end.

use std::time::Duration;

use super::{Broker, BrokerError};
use crate::job::{Job, NewJob};
use crate::wake::WaitPermit;

impl Broker {
    /// Store a new job (or find the one with the same idempotency key), wake
    /// the stream, then wait up to `wait` for it to end.
    /// Returns the job and whether this call created it.
    pub async fn submit(&self, new: NewJob, wait: Duration) -> Result<(Job, bool), BrokerError> {
        let permit = self.permit(wait)?;
        let mark = self.hub.mark();
        let (job, created) = self.store.insert(&new).await?;
        if created {
            tracing::info!(job_id = job.id, kind = %job.kind, "job submitted");
            self.metrics.jobs_submitted.inc();
            self.wake_stream();
        }
        match permit {
            Some(permit) if !job.is_terminal() => {
                let id = job.id;
                // A job this call created needs no read-back unless it was woken meanwhile;
                // a repeat of an idempotency key may be older than the mark.
                let fresh = created.then_some((job, mark));
                Ok((self.wait_for(id, wait, permit, fresh).await?, created))
            }
            _ => Ok((job, created)),
        }
    }

    /// A place among the waiting requests when the request will wait.
    pub(super) fn permit(&self, wait: Duration) -> Result<Option<WaitPermit>, BrokerError> {
        if wait.is_zero() {
            return Ok(None);
        }
        self.hub
            .reserve()
            .map(Some)
            .ok_or(BrokerError::TooManyWaiting)
    }
}
