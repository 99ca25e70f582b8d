//! The submitter withdraws a job that has not ended.

use std::sync::Arc;

use tracing::Instrument;

use super::{Broker, BrokerError, unsettled};
use crate::job::{Job, Scope};

impl Broker {
    /// Withdraw a job that has not ended. A job outside `scope` (another
    /// channel's) is not found.
    pub async fn cancel(self: &Arc<Self>, id: i64, scope: Scope) -> Result<Job, BrokerError> {
        let broker = self.clone();
        let span = tracing::info_span!("job", job_id = id);
        self.settle(async move { broker.cancel_now(id, &scope).await }.instrument(span))
            .await
    }

    async fn cancel_now(&self, id: i64, scope: &Scope) -> Result<Job, BrokerError> {
        // Its commit's notification is ours to hand over, not to read back.
        let _ending = self.hub.ending(id);
        for _ in 0..2 {
            if let Some(job) = self.ended(self.store.cancel(id, scope).await)? {
                tracing::info!(job_id = id, "job cancelled");
                return Ok(job);
            }
            match self
                .read_now(id)
                .await?
                .filter(|job| scope.allows(job.channel))
            {
                None => return Err(BrokerError::NotFound),
                Some(job) if job.is_terminal() => {
                    return Err(BrokerError::AlreadyTerminal(Box::new(job)));
                }
                // Open again on the read: it was locked or its deadline moved under us; retry.
                Some(_) => continue,
            }
        }
        Err(unsettled("cancel"))
    }
}
