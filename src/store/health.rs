//! Whether the database answers and takes writes: the readiness checks.

use super::rows::column;
use super::sql::status::{PING, READ_ONLY};
use super::{Store, StoreError};

impl Store {
    /// Why the database would refuse writes, if it would: a hot standby (in
    /// recovery, e.g. the URL reached a replica after a failover), or a server,
    /// database or role with `default_transaction_read_only = on`. `None`:
    /// it answers and takes writes.
    pub async fn read_only(&self) -> Result<Option<&'static str>, StoreError> {
        let row = self.db.one(READ_ONLY, &[]).await?;
        let row = row.ok_or_else(|| StoreError::Unavailable("no row".into()))?;
        Ok(if column::<bool>(&row, 0)? {
            Some("the database is a standby in recovery (read-only)")
        } else if column::<bool>(&row, 1)? {
            Some("the database is read-only (default_transaction_read_only)")
        } else {
            None
        })
    }

    /// The database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.one(PING, &[]).await?;
        Ok(())
    }
}
