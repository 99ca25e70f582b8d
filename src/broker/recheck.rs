//! The safety re-check: one query per instance (never one per waiter) for all
//! the ids this instance waits on, run after every LISTEN reconnect and every
//! `BACKCHANNEL_RECHECK_INTERVAL` seconds while anyone waits. It finds answers
//! whose notification was lost (sent while LISTEN was down, or never sent
//! because the answering instance died between commit and NOTIFY). The normal
//! path is [`ended_elsewhere`](super::ended_elsewhere).

use std::sync::Arc;

use super::{Broker, DoneNotice};

/// Ids read per statement: one statement for every waiter of an instance
/// (up to the default BACKCHANNEL_MAX_WAITING), so the cost does not grow
/// with the number of waiting requests.
pub(super) const CHUNK: usize = 16_384;

impl Broker {
    /// Read every waited-on job once and wake the waiters of those that ended.
    async fn recheck_waiters(&self) {
        let ids = self.hub.waited_ids();
        for chunk in ids.chunks(CHUNK) {
            match self.store.read_many(chunk).await {
                Ok(jobs) => {
                    for read in jobs {
                        if read.expired_now {
                            self.announce_end(&read.job, DoneNotice::ByNotifier);
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

/// Run until shutdown: re-check on every reconnect and every interval.
pub(super) async fn run(broker: Arc<Broker>) {
    let period = broker.settings.recheck_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = broker.hub.listen_reconnected() => {}
            _ = broker.shutdown.cancelled() => return,
        }
        broker.recheck_waiters().await;
    }
}
