//! Waiting for a job to end without holding a connection or sending queries:
//! the waiter sleeps until the hub wakes it (an answer in this process, or a
//! NOTIFY from another), its job's deadline, the end of its `wait`, or shutdown.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::{Instant, sleep_until};

use super::{Broker, BrokerError};
use crate::job::{Job, Scope};
use crate::wake::WaitPermit;

/// After a deadline the database did not yet see as passed, look again this soon.
const DEADLINE_RECHECK: Duration = Duration::from_millis(20);

impl Broker {
    /// The job now, or once terminal within `wait`. Only a request that will
    /// wait (its job is open) takes a place among the waiting requests. A
    /// job outside `scope` (another channel's) is not found.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = id))]
    pub async fn get(
        self: &Arc<Self>,
        id: i64,
        wait: Duration,
        scope: &Scope,
    ) -> Result<Job, BrokerError> {
        let mark = self.hub.mark();
        let job = self
            .read(id)
            .await?
            .filter(|job| scope.allows(job.channel))
            .ok_or(BrokerError::NotFound)?;
        if wait.is_zero() || job.is_terminal() {
            return Ok(job);
        }
        let permit = self.reserve(Some(job.channel))?;
        self.wait_for(id, wait, permit, Some((Box::new(job), mark)))
            .await
    }

    /// Wait up to `wait` for job `id` to be terminal; returns the job as last
    /// read (terminal or not). Reads the row once per wake-up, never on a timer
    /// (except in poll mode, the sleep-polling baseline, which reads it every
    /// poll interval). Its future is kept for as long as the request waits,
    /// so what it holds across the wait is kept small.
    ///
    /// `fresh` is a job this request just created or read, with the hub's
    /// mark taken before: unless the job was woken since, it is used as the
    /// first state instead of reading the row back.
    pub(super) async fn wait_for(
        self: &Arc<Self>,
        id: i64,
        wait: Duration,
        _permit: WaitPermit,
        mut fresh: Option<(Box<Job>, u64)>,
    ) -> Result<Job, BrokerError> {
        let until = Instant::now() + wait;
        // Registered before the first read: an answer landing in between wakes us.
        let waiter = self.hub.register(id);
        let mut recheck_at: Option<Instant> = None;
        // Boxed, as `fresh`: empty while waiting, they cost a pointer.
        let mut local: Option<Box<Job>> = None;
        loop {
            // Created before the state is taken: a wake from here on is kept.
            let by_job = pin!(waiter.slot().notify.notified());
            let unwoken = fresh
                .take()
                .filter(|(_, mark)| !self.hub.woken_since(*mark, id))
                .map(|(job, _)| job);
            let job = match local.take().or(unwoken) {
                Some(job) => *job,
                None => self.read(id).await?.ok_or(BrokerError::NotFound)?,
            };
            let now = Instant::now();
            if job.is_terminal() {
                tracing::debug!(job_id = id, state = job.state.as_str(), "waiter woken");
                return Ok(job);
            }
            if now >= until {
                return Ok(job);
            }
            let deadline = recheck_at.take().unwrap_or_else(|| instant_of(&job));
            let mut timer = if deadline <= now {
                now + DEADLINE_RECHECK
            } else {
                deadline.min(until)
            };
            // The timer stands for the job's deadline (not the end of the wait).
            let mut at_deadline = timer < until;
            if let Some(interval) = self.polling() {
                if now + interval < timer {
                    timer = now + interval;
                    at_deadline = false;
                }
            }
            tokio::select! {
                _ = by_job => local = waiter.slot().latest().map(Box::new),
                _ = sleep_until(timer) => {
                    if at_deadline {
                        recheck_at = Some(Instant::now() + DEADLINE_RECHECK);
                    }
                }
                _ = self.shutdown.cancelled() => return Ok(job),
            }
        }
    }
}

/// The job's deadline on this process's monotonic clock.
fn instant_of(job: &Job) -> Instant {
    let left = job.deadline - Utc::now();
    Instant::now() + left.to_std().unwrap_or(Duration::ZERO)
}
