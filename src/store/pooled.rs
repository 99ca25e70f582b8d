//! Statements on the query pool: each prepared once per connection (and
//! cached), or sent unnamed with its declared parameter types (through a
//! transaction pooler); each counted.

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::sql::Sql;
use super::{Counter, StoreError, pooler};

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The query pool and the instance's statement counter.
pub struct Pooled {
    pub pool: Pool,
    pub statements: Counter,
    /// Send pooled statements unnamed (through a transaction pooler).
    pub unnamed: bool,
}

impl Pooled {
    pub async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Run one statement on `client`: prepared (and cached), or unnamed.
    pub async fn rows(
        &self,
        client: &Object,
        sql: Sql,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        if self.unnamed {
            self.statements.add();
            return Ok(client.query_typed(sql.text, &typed(sql, params)).await?);
        }
        let statement = client
            .prepare_cached(sql.text)
            .await
            .map_err(pooler::hint)?;
        self.statements.add();
        Ok(client
            .query(&statement, params)
            .await
            .map_err(pooler::hint)?)
    }

    /// Run one statement on `client` (prepared and cached, or unnamed); at most one row.
    pub async fn row(
        &self,
        client: &Object,
        sql: Sql,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        if self.unnamed {
            self.statements.add();
            return Ok(client
                .query_typed_opt(sql.text, &typed(sql, params))
                .await?);
        }
        let statement = client
            .prepare_cached(sql.text)
            .await
            .map_err(pooler::hint)?;
        self.statements.add();
        Ok(client
            .query_opt(&statement, params)
            .await
            .map_err(pooler::hint)?)
    }

    /// One statement on a pooled connection; at most one row.
    pub async fn one(&self, sql: Sql, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        self.row(&client, sql, params).await
    }

    /// One statement on a pooled connection; all its rows.
    pub async fn all(&self, sql: Sql, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        self.rows(&client, sql, params).await
    }
}

/// Parameters with the types declared for their statement.
fn typed<'a>(sql: Sql, params: Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    debug_assert_eq!(params.len(), sql.types.len(), "types of {}", sql.text);
    params
        .iter()
        .copied()
        .zip(sql.types.iter().cloned())
        .collect()
}
