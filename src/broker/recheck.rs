//! The safety re-check: one query per instance (never one per waiter) for all
//! the ids this instance waits on, run after every LISTEN reconnect and every
//! `BACKCHANNEL_RECHECK_INTERVAL` seconds while anyone waits. It finds answers
//! whose notification was lost (sent while LISTEN was down, or never sent
//! because the answering instance died between commit and NOTIFY).

use std::sync::Arc;

use super::Broker;

/// Ids read per statement: one statement for every waiter of an instance
/// (up to the default BACKCHANNEL_MAX_WAITING), so the cost does not grow
/// with the number of waiting requests.
const CHUNK: usize = 16_384;

impl Broker {
    /// Read every waited-on job once and wake the waiters of those that ended.
    pub async fn recheck_waiters(&self) {
        let ids = self.hub.waited_ids();
        for chunk in ids.chunks(CHUNK) {
            match self.store.read_many(chunk).await {
                Ok(jobs) => {
                    for read in jobs {
                        if read.expired_now {
                            self.finished(&read.job);
                        } else if read.job.is_terminal() {
                            self.hub.wake_job(read.job.id, Some(&read.job));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "safety re-check failed");
                    return;
                }
            }
        }
    }
}

impl Broker {
    /// Read the jobs other instances ended that have waiters here, in one
    /// plain read per batch, and hand each to its waiters. While one batch is
    /// read, the next gathers. If the read fails, the waiters are woken to read
    /// their own rows (they then see the error, or the job).
    pub async fn fetch_ended_elsewhere(&self, ids: &[i64]) {
        match self.store.peek_many(ids).await {
            Ok(jobs) => {
                let mut unseen: std::collections::HashSet<i64> = ids.iter().copied().collect();
                for job in jobs {
                    unseen.remove(&job.id);
                    // Terminal (it was notified as ended); if not, the waiter
                    // keeps waiting and its own deadline timer takes over.
                    self.hub.wake_job(job.id, Some(&job));
                }
                // Deleted meanwhile: their waiters read and answer 404.
                for id in unseen {
                    self.hub.wake_job(id, None);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "reading jobs ended elsewhere failed; waiters read their own");
                for &id in ids {
                    self.hub.wake_job(id, None);
                }
            }
        }
    }
}

/// Run until shutdown: fetch what other instances ended for waiters here.
pub async fn run_fetcher(broker: Arc<Broker>) {
    loop {
        tokio::select! {
            _ = broker.hub.fetch.notified() => {}
            _ = broker.shutdown.cancelled() => return,
        }
        let mut ids = broker.hub.take_ended_elsewhere();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(CHUNK) {
            broker.fetch_ended_elsewhere(chunk).await;
        }
    }
}

/// Run until shutdown: re-check on every reconnect and every interval.
pub async fn run(broker: Arc<Broker>) {
    let period = broker.settings.recheck_interval();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = broker.hub.reconnected.notified() => {}
            _ = broker.shutdown.cancelled() => return,
        }
        broker.recheck_waiters().await;
    }
}
