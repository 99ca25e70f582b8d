//! The listener's answer: the first one ends the job, a replay of the same
//! answer is accepted, a different one is a conflict.

use std::sync::Arc;

use tracing::Instrument;

use super::{Broker, BrokerError, unsettled};
use crate::job::{Answer, Job, JobState, Scope};

impl Broker {
    /// Record the listener's answer; replays of the same answer are
    /// accepted. A job outside `scope` (another channel's) is not found.
    pub async fn answer(
        self: &Arc<Self>,
        id: i64,
        answer: Answer,
        scope: Scope,
    ) -> Result<Job, BrokerError> {
        let broker = self.clone();
        let span = tracing::info_span!("job", job_id = id);
        self.settle(async move { broker.answer_now(id, answer, &scope).await }.instrument(span))
            .await
    }

    async fn answer_now(&self, id: i64, answer: Answer, scope: &Scope) -> Result<Job, BrokerError> {
        self.check_sealed_answer(id, &answer, scope).await?;
        let answer = Arc::new(answer);
        // Its commit's notification is ours to hand over, not to read back.
        let _ending = self.hub.ending(id);
        for _ in 0..2 {
            if let Some(job) = self.ended(self.store.answer(id, &answer, scope).await)? {
                tracing::info!(job_id = id, state = job.state.as_str(), "job answered");
                return Ok(job);
            }
            match self
                .read_now(id)
                .await?
                .filter(|job| scope.allows(job.channel))
            {
                None => return Err(BrokerError::NotFound),
                Some(job) => match job.state {
                    // "The same answer" is decided by jsonb equality, so that
                    // 1e2 and 100 are the same number, as PostgreSQL stores them.
                    JobState::Done | JobState::Failed => {
                        return if self.store.answer_matches(id, &answer).await? {
                            Ok(job)
                        } else {
                            Err(BrokerError::AlreadyAnswered(Box::new(job)))
                        };
                    }
                    JobState::Expired | JobState::Cancelled => {
                        return Err(BrokerError::Gone(Box::new(job)));
                    }
                    JobState::Pending | JobState::Delivered => continue,
                },
            }
        }
        Err(unsettled("answer"))
    }
}
