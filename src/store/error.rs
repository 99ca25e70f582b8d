//! What can go wrong with the database, split by what the caller can do about it.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (down, restarting, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error. Shown by what identifies it
    /// (SQLSTATE, the objects named, the server routine), never by its message,
    /// detail or context, which can quote the data of the statement.
    #[error("{}", identify(.0))]
    Query(#[source] tokio_postgres::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
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
