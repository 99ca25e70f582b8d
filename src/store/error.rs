//! What can go wrong with the database, split by what the caller can do about it.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (down, restarting, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database takes no writes now (SQLSTATE 25006: a standby, or
    /// `default_transaction_read_only`); worth retrying later, elsewhere.
    #[error("the database is read-only (SQLSTATE 25006)")]
    ReadOnly,
    /// The database answered with an error. Shown by what identifies it
    /// (SQLSTATE, the objects named, the server routine), never by its message,
    /// detail or context, which can quote the data of the statement.
    #[error("{}", identify(.0))]
    Query(#[source] tokio_postgres::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::ReadOnly)
    }

    pub fn is_read_only(&self) -> bool {
        matches!(self, StoreError::ReadOnly)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let lost = error.is_closed()
            || match error.code() {
                None => true,
                Some(code) => {
                    code.code().starts_with("08")
                        || *code == SqlState::ADMIN_SHUTDOWN
                        || *code == SqlState::CRASH_SHUTDOWN
                        || *code == SqlState::CANNOT_CONNECT_NOW
                }
            };
        if lost {
            StoreError::Unavailable(error.to_string())
        } else if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
            StoreError::ReadOnly
        } else if error.code() == Some(&SqlState::QUERY_CANCELED) {
            // statement_timeout (or a DBA's pg_cancel_backend): try again later.
            StoreError::Unavailable("the statement was cancelled (statement_timeout)".into())
        } else {
            StoreError::Query(error)
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

impl StoreError {
    /// A database error described as [`StoreError::Query`] shows it: by
    /// SQLSTATE and the objects named, never by its message.
    pub fn from_ref(error: &tokio_postgres::Error) -> String {
        identify(error)
    }
}

/// A database error by what identifies it, without the data it may quote.
fn identify(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // Not from the server: the client's own description names no data.
        return format!("database error: {error}");
    };
    let mut text = format!(
        "database error: SQLSTATE {} ({})",
        db.code().code(),
        db.severity()
    );
    let named = [
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
        ("routine", db.routine()),
    ];
    for (what, name) in named {
        if let Some(name) = name {
            text.push_str(&format!(", {what} {name}"));
        }
    }
    text
}
