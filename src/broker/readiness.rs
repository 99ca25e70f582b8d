//! Readiness with its reason: what `/readyz` reports.

use std::time::Duration;

use super::Broker;

/// How long the readiness query may take.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl Broker {
    /// `Ok` when this instance can serve: the database answers and takes
    /// writes and, in notify mode, LISTEN is up. Otherwise why not (the
    /// database's state first: a standby also refuses LISTEN).
    pub async fn readiness(&self) -> Result<(), &'static str> {
        match tokio::time::timeout(READY_TIMEOUT, self.store.read_only()).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(reason))) => return Err(reason),
            Ok(Err(_)) | Err(_) => return Err("the database does not answer"),
        }
        if self.polling().is_none() && !self.hub.is_listening() {
            return Err("the notification listener (LISTEN) is not connected");
        }
        Ok(())
    }
}
