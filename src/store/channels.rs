//! The named channels: created for the names the token files give, read
//! whole (they are few), and a channel's open jobs counted for its limit.

use super::rows::column;
use super::sql::channels::{ENSURE_CHANNELS, OPEN_JOBS, READ_CHANNELS};
use super::{Store, StoreError};
use crate::job::ChannelId;

/// One row of `backchannel.channels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRow {
    pub id: ChannelId,
    pub name: String,
    pub max_open_jobs: Option<i32>,
    pub max_waiting: Option<i32>,
}

impl Store {
    /// Create the channels named `names` that do not exist, then read them
    /// all. Writes only when one is missing (a read-only database, a
    /// standby, serves the channels that exist).
    pub async fn ensure_channels(&self, names: &[String]) -> Result<Vec<ChannelRow>, StoreError> {
        let known = self.channels().await?;
        let missing: Vec<&String> = names
            .iter()
            .filter(|name| !known.iter().any(|row| &row.name == *name))
            .collect();
        if missing.is_empty() {
            return Ok(known);
        }
        self.db.all(ENSURE_CHANNELS, &[&missing]).await?;
        self.channels().await
    }

    /// Every channel.
    pub async fn channels(&self) -> Result<Vec<ChannelRow>, StoreError> {
        let rows = self.db.all(READ_CHANNELS, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(ChannelRow {
                    id: column(row, 0)?,
                    name: column(row, 1)?,
                    max_open_jobs: column(row, 2)?,
                    max_waiting: column(row, 3)?,
                })
            })
            .collect()
    }

    /// How many jobs of `channel` are open, counted up to `limit`.
    pub async fn open_jobs(&self, channel: ChannelId, limit: i64) -> Result<i64, StoreError> {
        let row = self.db.one(OPEN_JOBS, &[&channel, &limit]).await?;
        row.map_or(Ok(0), |row| column(&row, 0))
    }
}
