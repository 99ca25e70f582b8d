//! Outgoing notifications, coalesced. A committing transaction that notified
//! takes a cluster-wide lock, and every LISTEN session of every instance then
//! reads the queue in a transaction of its own, so notifying commits are kept
//! few: while one batch is in flight the next one gathers, and batches leave
//! at most one per `SPACING`. At low load a notification leaves at once (the
//! previous batch is long gone); under load it waits a few milliseconds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::job::ChannelId;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;

/// Most ids carried over after failures; beyond it the oldest are dropped
/// (waiters then rely on their own deadline timer and the safety re-check).
const MAX_BACKLOG: usize = 100_000;

/// Least time between the starts of two batches. Measured with 3 instances at
/// c=64 (make bench): without it, thousands of one- or two-id batches a second,
/// each read by every instance's LISTEN session.
const SPACING: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Pending {
    done: Vec<i64>,
    /// The channels whose streams to wake, each once.
    new: BTreeSet<ChannelId>,
}

#[derive(Default)]
pub struct Notifier {
    pending: Mutex<Pending>,
    kick: Notify,
    /// The last send failed (a full notification queue, a lost database):
    /// wake-ups wait for the next success or the safety re-check.
    behind: AtomicBool,
}

impl Notifier {
    pub fn new() -> Arc<Notifier> {
        Arc::new(Notifier::default())
    }

    /// Queue `NOTIFY backchannel_done, '<id>'`.
    pub fn done(&self, id: i64) {
        self.pending.lock().expect("notifier lock").done.push(id);
        self.kick.notify_one();
    }

    /// Queue one `NOTIFY backchannel_new, '<channel>'` (many requests make one).
    pub fn new_job(&self, channel: ChannelId) {
        self.pending
            .lock()
            .expect("notifier lock")
            .new
            .insert(channel);
        self.kick.notify_one();
    }

    /// Whether the last send failed and its notifications still wait.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("notifier lock"))
    }

    fn put_back(&self, batch: Pending) {
        let mut pending = self.pending.lock().expect("notifier lock");
        pending.new.extend(batch.new);
        let mut done = batch.done;
        done.append(&mut pending.done);
        if done.len() > MAX_BACKLOG {
            let excess = done.len() - MAX_BACKLOG;
            done.drain(..excess);
        }
        pending.done = done;
    }

    /// Send batches until `shutdown`, then flush what is left once.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) {
        let mut last_start: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = shutdown.cancelled() => break,
            }
            if let Some(start) = last_start {
                tokio::select! {
                    _ = tokio::time::sleep_until(start + SPACING) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            last_start = Some(tokio::time::Instant::now());
            let batch = self.take();
            if batch.done.is_empty() && batch.new.is_empty() {
                continue;
            }
            let count = (batch.done.len() + batch.new.len()) as u64;
            if let Err(error) = store.notify(&batch.done, &batch.new).await {
                self.behind.store(true, Ordering::Relaxed);
                tracing::warn!(%error, ids = batch.done.len(), "sending notifications failed; will retry");
                self.put_back(batch);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = shutdown.cancelled() => break,
                }
                self.kick.notify_one();
            } else {
                self.behind.store(false, Ordering::Relaxed);
                metrics.wake.notifications_sent.inc_by(count);
            }
        }
        let batch = self.take();
        if !batch.done.is_empty() || !batch.new.is_empty() {
            let _ = store.notify(&batch.done, &batch.new).await;
        }
    }
}
