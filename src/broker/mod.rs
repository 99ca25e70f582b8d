//! The domain: submit, wait, answer, cancel, stream. No HTTP types here.

pub mod recheck;
mod status;
mod stream;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Settings, WakeMode};
use crate::hub::{Hub, WaitPermit};
use crate::job::{Answer, Job, JobState};
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::store::{NewJob, Store, StoreError};

pub use status::{ListenerStatus, Stats};
pub use stream::{JobStream, RETRY as STREAM_RETRY, StreamItem};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no such job")]
    NotFound,
    #[error("the job is already {}", .0.state.as_str())]
    AlreadyTerminal(Box<Job>),
    #[error("the job was already answered differently")]
    AlreadyAnswered(Box<Job>),
    #[error("the job is {}", .0.state.as_str())]
    Gone(Box<Job>),
    #[error("another listener holds the stream")]
    ListenerBusy,
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("too many requests are waiting on this instance")]
    TooManyWaiting,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One instance's broker: the store, the hub and the background pieces.
pub struct Broker {
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub notifier: Arc<Notifier>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub instance: String,
    pub shutdown: CancellationToken,
    /// Connection settings of the dedicated sessions (stream lock, LISTEN).
    pub session_config: tokio_postgres::Config,
}

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

    /// The job now, or once terminal within `wait`.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = id))]
    pub async fn get(&self, id: i64, wait: Duration) -> Result<Job, BrokerError> {
        match self.permit(wait)? {
            None => self.read(id).await?.ok_or(BrokerError::NotFound),
            Some(permit) => self.wait_for(id, wait, permit, None).await,
        }
    }

    /// A place among the waiting requests when the request will wait.
    fn permit(&self, wait: Duration) -> Result<Option<WaitPermit>, BrokerError> {
        if wait.is_zero() {
            return Ok(None);
        }
        self.hub
            .reserve()
            .map(Some)
            .ok_or(BrokerError::TooManyWaiting)
    }

    /// Withdraw a job that has not ended.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = id))]
    pub async fn cancel(&self, id: i64) -> Result<Job, BrokerError> {
        for _ in 0..2 {
            if let Some(job) = self.store.cancel(id).await? {
                tracing::info!(job_id = id, "job cancelled");
                self.finished(&job);
                return Ok(job);
            }
            match self.read(id).await? {
                None => return Err(BrokerError::NotFound),
                Some(job) if job.is_terminal() => {
                    return Err(BrokerError::AlreadyTerminal(Box::new(job)));
                }
                // Open again on the read: it was locked or its deadline moved under us; retry.
                Some(_) => continue,
            }
        }
        Err(BrokerError::Store(StoreError::Unavailable(
            "cancel did not settle".into(),
        )))
    }

    /// Record the listener's answer; replays of the same answer are accepted.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = id))]
    pub async fn answer(&self, id: i64, answer: Answer) -> Result<Job, BrokerError> {
        for _ in 0..2 {
            if let Some(job) = self.store.answer(id, &answer).await? {
                tracing::info!(job_id = id, state = job.state.as_str(), "job answered");
                self.finished(&job);
                return Ok(job);
            }
            match self.read(id).await? {
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
        Err(BrokerError::Store(StoreError::Unavailable(
            "answer did not settle".into(),
        )))
    }

    /// Read one job, expiring it if its deadline passed (and telling everyone).
    pub async fn read(&self, id: i64) -> Result<Option<Job>, BrokerError> {
        let Some(read) = self.store.read(id).await? else {
            return Ok(None);
        };
        if read.expired_now {
            tracing::info!(job_id = id, "job expired");
            self.finished(&read.job);
        }
        Ok(Some(read.job))
    }

    /// A job reached a terminal state in this process: wake local waiters with
    /// the job itself, and tell other instances (and SQL clients) by NOTIFY.
    fn finished(&self, job: &Job) {
        self.metrics.finished(job);
        self.hub.wake_job(job.id, Some(job));
        self.notifier.done(job.id);
    }

    /// A job was created: wake the stream in this process directly, or by one
    /// coalesced NOTIFY when the stream lives elsewhere (or nowhere yet).
    fn wake_stream(&self) {
        match self.settings.wake {
            WakeMode::Poll => {}
            WakeMode::Notify if self.hub.has_local_stream() => self.hub.wake_stream(),
            WakeMode::Notify => self.notifier.new_job(),
        }
    }

    /// Ready to serve: the database answers and, in notify mode, LISTEN is up.
    pub async fn ready(&self) -> bool {
        let listening = self.settings.wake == WakeMode::Poll || self.hub.is_listening();
        listening
            && tokio::time::timeout(Duration::from_secs(2), self.store.ping())
                .await
                .is_ok_and(|r| r.is_ok())
    }
}
