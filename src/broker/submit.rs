//! Submitting a job: store it (or find the one with the same idempotency key),
//! wake the stream, and optionally wait for its end.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Broker, BrokerError};
use crate::job::{ChannelId, Job, NewJob};
use crate::telemetry::metrics::SiteLabel;
use crate::wake::WaitPermit;

impl Broker {
    /// Store a new job (or find the one with the same idempotency key), wake
    /// the stream, then wait up to `wait` for it to end.
    /// Returns the job and whether this call created it.
    pub async fn submit(
        self: &Arc<Self>,
        new: NewJob,
        wait: Duration,
    ) -> Result<(Job, bool), BrokerError> {
        self.check_sealed_submit(&new)?;
        // A request that will wait takes its place among the waiting requests
        // before anything is stored, so that a refusal changes nothing.
        let permit = if wait.is_zero() {
            None
        } else {
            match self.hub.reserve(self.waiting_limit(new.channel)) {
                Some(permit) => Some(permit),
                // Rare: on the heap, so that every submit's future stays small.
                None => return Box::pin(self.submit_without_room(new)).await,
            }
        };
        let mark = self.hub.mark();
        let broker = self.clone();
        let (job, created) = self
            .settle(async move { broker.store_job(new).await })
            .await?;
        match permit {
            Some(permit) if !job.is_terminal() => {
                let id = job.id;
                // A job this call created needs no read-back unless it was woken meanwhile;
                // a repeat of an idempotency key may be older than the mark.
                let fresh = created.then(|| (Box::new(job), mark));
                Ok((self.wait_for(id, wait, permit, fresh).await?, created))
            }
            _ => Ok((job, created)),
        }
    }

    /// Insert the job (a state change: runs to completion on its own task).
    async fn store_job(&self, new: NewJob) -> Result<(Job, bool), BrokerError> {
        self.check_channel_room(&new).await?;
        // A stream held elsewhere is woken by a NOTIFY in the insert's own
        // commit; one held here, directly.
        let wake = self.hub.new_job_wake(new.channel);
        let inserted = self.store.insert(new, wake).await?;
        let job = inserted.job;
        if inserted.created {
            tracing::info!(job_id = job.id, kind = %job.kind, "job submitted");
            self.metrics.jobs.submitted.inc();
            let channel = self.channel_name(job.channel);
            self.metrics
                .stream
                .submitted_by_channel
                .get_or_create(&SiteLabel { channel })
                .inc();
            self.announce_new(wake, inserted.notified, &job);
            return Ok((job, true));
        }
        // A repeat of the key answers the first job's true state: one whose
        // deadline passed is expired, as any read would find it.
        if !job.is_terminal() && job.deadline <= Utc::now() {
            if let Some(read) = self.read_now(job.id).await? {
                return Ok((read, false));
            }
        }
        Ok((job, false))
    }

    /// No place left to wait. A repeat of a key whose job has ended would not
    /// wait: it is answered. Anything else is refused, and nothing is stored.
    async fn submit_without_room(
        self: &Arc<Self>,
        new: NewJob,
    ) -> Result<(Job, bool), BrokerError> {
        if let Some(key) = &new.idempotency_key {
            if let Some(id) = self.store.find_key(key, new.channel).await? {
                if let Some(job) = self.read(id).await? {
                    if job.is_terminal() {
                        return Ok((job, false));
                    }
                }
            }
        }
        Err(BrokerError::TooManyWaiting)
    }

    /// A channel with a limit of open jobs (`max_open_jobs`) refuses a new
    /// job once it holds that many; a repeated key is let through (it
    /// answers with its job). The count and the insert are not one
    /// statement: concurrent submits may overshoot the limit by the
    /// requests in flight at that moment.
    async fn check_channel_room(&self, new: &NewJob) -> Result<(), BrokerError> {
        let Some(limit) = self
            .channel_by_id(new.channel)
            .and_then(|row| row.max_open_jobs)
        else {
            return Ok(());
        };
        if let Some(key) = &new.idempotency_key {
            if self.store.find_key(key, new.channel).await?.is_some() {
                return Ok(());
            }
        }
        let open = self.store.open_jobs(new.channel, i64::from(limit)).await?;
        if open >= i64::from(limit) {
            return Err(BrokerError::ChannelFull(limit));
        }
        Ok(())
    }

    /// A place among the waiting requests (and among `channel`'s, if it has
    /// a limit of its own), or `TooManyWaiting` (also held by a waiting
    /// request this instance forwards, for as long as it waits).
    pub fn reserve(&self, channel: Option<ChannelId>) -> Result<WaitPermit, BrokerError> {
        self.hub
            .reserve(channel.and_then(|channel| self.waiting_limit(channel)))
            .ok_or(BrokerError::TooManyWaiting)
    }
}
