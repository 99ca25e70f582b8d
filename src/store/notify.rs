//! The notifier's coalesced NOTIFYs, in one transaction per batch.

use super::sql::channels::NOTIFY_BATCH;
use super::{Store, StoreError};

impl Store {
    /// Send notifications for finished jobs and, if asked, one new-job hint,
    /// all in one transaction (one notifying commit for the whole batch).
    pub async fn notify(&self, done: &[i64], new: bool) -> Result<(), StoreError> {
        self.db.one(NOTIFY_BATCH, &[&done, &new]).await?;
        Ok(())
    }
}
