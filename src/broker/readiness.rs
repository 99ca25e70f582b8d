//! Readiness with its reason: what `/readyz` reports.

use std::time::Duration;

use super::Broker;

/// How long the readiness query may take.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl Broker {
    /// `Ok` when this instance can serve: the database answers and takes
    /// writes, both group-commit loops run and, in notify mode, LISTEN is
    /// up; with what works less well meanwhile (`degraded`: wake-ups late).
    /// Otherwise why not (the database's state first: a standby also
    /// refuses LISTEN).
    pub async fn readiness(&self) -> Result<Vec<&'static str>, &'static str> {
        if !self.store.batching() {
            return Err("a group-commit loop stopped (see the log): restart this instance");
        }
        match tokio::time::timeout(READY_TIMEOUT, self.store.read_only()).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(reason))) => return Err(reason),
            Ok(Err(_)) | Err(_) => return Err("the database does not answer"),
        }
        if self.polling().is_none() && !self.hub.is_listening() {
            return Err("the notification listener (LISTEN) is not connected");
        }
        let mut degraded = Vec::new();
        if self.notifier.is_behind() {
            // Jobs are stored and ended; their wake-ups of other instances
            // wait (PostgreSQL's notification queue is full, most often).
            degraded.push("notifications_delayed");
        }
        Ok(degraded)
    }
}
