//! The notifier's coalesced NOTIFYs, in one transaction per batch.

use std::collections::BTreeSet;

use super::sql::notifications::NOTIFY_BATCH;
use super::{Store, StoreError};
use crate::job::ChannelId;

impl Store {
    /// Send notifications for finished jobs and one new-job hint per channel
    /// in `new`, all in one transaction (one notifying commit for the batch).
    pub async fn notify(&self, done: &[i64], new: &BTreeSet<ChannelId>) -> Result<(), StoreError> {
        let new: Vec<ChannelId> = new.iter().copied().collect();
        self.db.one(NOTIFY_BATCH, &[&done, &new]).await?;
        Ok(())
    }
}
