//! Statements on the query pool: each prepared once per connection (and
//! cached), each counted.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Counter, StoreError};

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The query pool and the instance's statement counter.
pub struct Pooled {
    pub pool: Pool,
    pub statements: Counter,
}

impl Pooled {
    pub async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Run one prepared (and cached) statement on `client`.
    pub async fn rows(
        &self,
        client: &Object,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let statement = client.prepare_cached(sql).await?;
        self.statements.add();
        Ok(client.query(&statement, params).await?)
    }

    /// Run one prepared (and cached) statement on `client`; at most one row.
    pub async fn row(
        &self,
        client: &Object,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let statement = client.prepare_cached(sql).await?;
        self.statements.add();
        Ok(client.query_opt(&statement, params).await?)
    }

    /// One statement on a pooled connection; at most one row.
    pub async fn one(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        self.row(&client, sql, params).await
    }

    /// One statement on a pooled connection; all its rows.
    pub async fn all(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        self.rows(&client, sql, params).await
    }
}
