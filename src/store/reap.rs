//! The reaper's tick: one statement, on one instance per tick.

use tokio_postgres::SimpleQueryMessage;

use super::sql::maintenance::reap_tick;
use super::sql::{LOCK_NAMESPACE, LOCK_REAPER};
use super::{Store, StoreError};

/// What one reaper tick did.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    pub expired: Vec<i64>,
    /// Seconds from creation to expiry of each expired job.
    pub ages: Vec<f64>,
    pub deleted: u64,
}

impl Store {
    /// One reaper tick, in one transaction, if no other instance is reaping:
    /// expire open jobs past their deadline (notifying each) and delete
    /// terminal jobs older than `retention_secs`. `None` when another instance
    /// holds the tick.
    pub async fn reap(
        &self,
        retention_secs: f64,
        batch: i64,
    ) -> Result<Option<Reaped>, StoreError> {
        let client = self.db.client().await?;
        self.db.statements.add();
        let sql = reap_tick(LOCK_NAMESPACE, LOCK_REAPER, batch, retention_secs);
        let messages = client.simple_query(&sql).await?;
        let mut reaped = Reaped::default();
        let mut mine = false;
        for message in &messages {
            let SimpleQueryMessage::Row(row) = message else {
                continue;
            };
            mine = row.get(0) == Some("t");
            let number = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
            match row.get(1).and_then(|v| v.parse::<i64>().ok()) {
                Some(id) => {
                    reaped.expired.push(id);
                    reaped.ages.push(number(2).unwrap_or(0.0));
                }
                None => reaped.deleted = number(2).unwrap_or(0.0) as u64,
            }
        }
        Ok(mine.then_some(reaped))
    }
}
