//! How a job ended on another instance reaches its waiters here: the LISTEN
//! session hears its `backchannel_done` notification and, when someone here
//! waits for it ([`Hub::heard_ended`](crate::wake::Hub::heard_ended)), queues
//! its id here; this loop reads every queued job in one plain read per batch
//! and hands each to its waiters. While one batch is read, the next gathers.
//! The notification of a job this instance ended itself is heard too: its
//! waiters hold its end by then (or by the time its id comes up here), and
//! it is not read.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Broker;
use super::recheck::CHUNK;

impl Broker {
    /// Read the jobs other instances ended that have waiters here and hand
    /// each to its waiters. If the read fails, the waiters are woken to read
    /// their own rows (they then see the error, or the job).
    async fn fetch_ended_elsewhere(&self, ids: &[i64]) {
        match self.store.peek_many(ids).await {
            Ok(jobs) => {
                let mut unseen: HashSet<i64> = ids.iter().copied().collect();
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

/// Run until shutdown: fetch what other instances ended for waiters here,
/// as `queue` brings their ids.
pub(super) async fn run(broker: Arc<Broker>, mut queue: mpsc::UnboundedReceiver<i64>) {
    let mut ids = Vec::new();
    loop {
        tokio::select! {
            taken = queue.recv_many(&mut ids, usize::MAX) => if taken == 0 {
                return;
            },
            _ = broker.shutdown.cancelled() => return,
        }
        ids.sort_unstable();
        ids.dedup();
        // Heard before this instance's own statement that ended the job
        // returned, or waited on no longer: nothing left to read.
        ids.retain(|&id| broker.hub.awaits_end(id));
        for chunk in ids.chunks(CHUNK) {
            broker.fetch_ended_elsewhere(chunk).await;
        }
        ids.clear();
    }
}
