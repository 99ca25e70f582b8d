//! Statements on the query pool: each prepared once per connection (and
//! cached), or sent unnamed with its declared parameter types (through a
//! transaction pooler); each counted. A prepared statement that a
//! transaction pooler lost or mixed up goes out again unnamed, and the pool
//! stays unnamed ([`Naming`]).

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::pooler::Naming;
use super::sql::Sql;
use super::{Counter, StoreError};

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The query pool, the instance's statement counter, and how the pool's
/// statements go out.
pub struct Pooled {
    pub pool: Pool,
    pub statements: Counter,
    /// Unnamed statements (through a transaction pooler): from the start, or
    /// since the first sign of one.
    pub naming: Naming,
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
        if !self.naming.unnamed() {
            let prepared = async {
                let statement = client.prepare_cached(sql.text).await?;
                self.statements.add();
                client.query(&statement, params).await
            };
            match prepared.await {
                Err(error) if self.naming.switch_on(&error) => {}
                result => return Ok(result?),
            }
        }
        self.statements.add();
        Ok(client.query_typed(sql.text, &typed(sql, params)).await?)
    }

    /// Run one statement on `client` (prepared and cached, or unnamed); at most one row.
    pub async fn row(
        &self,
        client: &Object,
        sql: Sql,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        if !self.naming.unnamed() {
            let prepared = async {
                let statement = client.prepare_cached(sql.text).await?;
                self.statements.add();
                client.query_opt(&statement, params).await
            };
            match prepared.await {
                Err(error) if self.naming.switch_on(&error) => {}
                result => return Ok(result?),
            }
        }
        self.statements.add();
        Ok(client
            .query_typed_opt(sql.text, &typed(sql, params))
            .await?)
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
