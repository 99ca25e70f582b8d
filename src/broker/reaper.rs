//! The reaper: on every instance, a periodic tick that expires open jobs past
//! their deadline and deletes old terminal jobs. A transaction-scoped advisory
//! try-lock lets one instance reap per tick, so nothing outlives a process
//! killed while its requests waited.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{MissedTickBehavior, interval};

use super::Broker;

/// Rows expired or deleted per tick at most; a backlog drains over several ticks.
const BATCH: i64 = 1000;

pub(super) async fn run(broker: Arc<Broker>) {
    let period = broker.settings.reaper_interval;
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broker.shutdown.cancelled() => return,
        }
        let retention = broker.settings.retention.as_secs_f64();
        match broker.store.reap(retention, BATCH).await {
            Ok(Some(reaped)) => {
                for id in &reaped.expired {
                    broker.hub.wake_job(*id, None);
                }
                broker.metrics.jobs.reaped(&reaped.ages, reaped.deleted);
                if !reaped.expired.is_empty() || reaped.deleted > 0 {
                    tracing::info!(
                        expired = reaped.expired.len(),
                        deleted = reaped.deleted,
                        "reaper tick"
                    );
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "reaper tick failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = broker.shutdown.cancelled() => return,
                }
            }
        }
    }
}
