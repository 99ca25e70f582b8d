//! What operators and `/metrics` read: who holds the stream, jobs by
//! state, the oldest pending job, the notification queue.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::rows::column;
use super::sql::status::{NOTIFICATION_QUEUE_USAGE, OLDEST_PENDING_AGE, STATS};
use super::sql::stream::{CURRENT_HOLDER, HOLDER_ADDRESS};
use super::sql::stream_lock;
use super::{Store, StoreError};
use crate::job::ChannelId;

/// Who holds the stream lock right now.
#[derive(Debug, Clone)]
pub struct Holder {
    pub pid: i32,
    pub listener_id: Option<String>,
    pub instance: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

impl Store {
    /// The backend holding `channel`'s stream lock, if any.
    pub async fn holder(&self, channel: ChannelId) -> Result<Option<Holder>, StoreError> {
        let (space, key) = stream_lock(channel);
        let row = self
            .db
            .one(CURRENT_HOLDER, &[&space, &key, &channel])
            .await?;
        row.map(|row| {
            Ok(Holder {
                pid: column(&row, 0)?,
                listener_id: column(&row, 1)?,
                instance: column(&row, 2)?,
                since: column(&row, 3)?,
            })
        })
        .transpose()
    }

    /// The advertised URL and instance name of the stream's holder, when it
    /// holds the lock now and recorded a URL.
    pub async fn holder_address(
        &self,
        channel: ChannelId,
    ) -> Result<Option<(String, String)>, StoreError> {
        let (space, key) = stream_lock(channel);
        let row = self
            .db
            .one(HOLDER_ADDRESS, &[&space, &key, &channel])
            .await?;
        row.map(|row| Ok((column(&row, 0)?, column(&row, 1)?)))
            .transpose()
    }

    /// Jobs of `channel` by state and the age of its oldest pending job (seconds).
    pub async fn stats(&self, channel: ChannelId) -> Result<(Value, Option<f64>), StoreError> {
        let row = self.db.one(STATS, &[&channel]).await?;
        let row = row.ok_or_else(|| StoreError::Unavailable("stats returned no row".into()))?;
        Ok((column(&row, 0)?, column(&row, 1)?))
    }

    /// The age of the oldest pending job in seconds, if any.
    pub async fn oldest_pending_age(&self) -> Result<Option<f64>, StoreError> {
        let row = self.db.one(OLDEST_PENDING_AGE, &[]).await?;
        Ok(row.map(|row| column(&row, 0)).transpose()?.flatten())
    }

    /// PostgreSQL's notification queue usage (0..1).
    pub async fn notification_queue_usage(&self) -> Result<f64, StoreError> {
        let row = self.db.one(NOTIFICATION_QUEUE_USAGE, &[]).await?;
        row.map_or(Ok(0.0), |row| column(&row, 0))
    }
}
