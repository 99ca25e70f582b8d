//! What can go wrong with the database, split by what the caller can do about it.

use std::sync::Arc;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// A database failure. Cloned when one failure is every request's of a
/// batch: each gets the same classified error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (down, restarting, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a value of the statement (SQLSTATE class 22, data
    /// exception: a number out of range, a character it cannot store): the
    /// caller's input, not the database, is at fault.
    #[error("the database refused a value: {0}")]
    InvalidValue(&'static str),
    /// The database takes no writes now (SQLSTATE 25006: a standby, or
    /// `default_transaction_read_only`); worth retrying later, elsewhere.
    #[error("the database is read-only (SQLSTATE 25006)")]
    ReadOnly,
    /// The database answered with an error. Shown by what identifies it
    /// (SQLSTATE, the objects named, the server routine), never by its message,
    /// detail or context, which can quote the data of the statement.
    #[error("{}", identify(.0))]
    Query(#[source] Arc<tokio_postgres::Error>),
    /// A row holds a value the broker cannot read (written by another
    /// application): names the job and the column, never the value.
    #[error("cannot read a stored job: {0}")]
    Undecodable(String),
    /// The job was ended by this request (its end is committed and was
    /// announced), but its row cannot be read back: see [`Undecodable`](Self::Undecodable).
    #[error("job {id} ended, but cannot be read back: {cause}")]
    EndedUnreadable { id: i64, cause: String },
    /// Too many requests wait for the database on this instance already:
    /// refused before anything was stored.
    #[error("{0} requests already wait for the database on this instance")]
    Overloaded(usize),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::ReadOnly)
    }

    pub fn is_read_only(&self) -> bool {
        matches!(self, StoreError::ReadOnly)
    }

    /// PostgreSQL's notification queue is full (SQLSTATE 54000 on a
    /// statement that notifies): the statement did nothing; without its
    /// NOTIFY it would commit.
    pub fn is_notify_queue_full(&self) -> bool {
        matches!(self, StoreError::Query(error)
            if error.code() == Some(&SqlState::PROGRAM_LIMIT_EXCEEDED))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(code) = error.code() else {
            // No SQLSTATE: the connection failed or closed.
            return StoreError::Unavailable(error.to_string());
        };
        let class = &code.code()[..2];
        // 08: connection exceptions; 53: insufficient resources (too many
        // connections, out of memory, disk full); 57P0x: shutting down.
        let unavailable = error.is_closed()
            || class == "08"
            || class == "53"
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
        if unavailable {
            StoreError::Unavailable(identify(&error))
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            StoreError::ReadOnly
        } else if *code == SqlState::QUERY_CANCELED {
            // statement_timeout (or a DBA's pg_cancel_backend): try again later.
            StoreError::Unavailable("the statement was cancelled (statement_timeout)".into())
        } else if class == "22" {
            StoreError::InvalidValue(data_exception(code))
        } else {
            StoreError::Query(Arc::new(error))
        }
    }
}

/// A data exception in words that quote nothing of the data.
fn data_exception(code: &SqlState) -> &'static str {
    match *code {
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE => "a number is out of the range PostgreSQL stores",
        SqlState::UNTRANSLATABLE_CHARACTER | SqlState::CHARACTER_NOT_IN_REPERTOIRE => {
            "a string holds a character PostgreSQL cannot store"
        }
        SqlState::DATETIME_FIELD_OVERFLOW => "a time is out of the range PostgreSQL stores",
        SqlState::INTERVAL_FIELD_OVERFLOW => "a duration is out of the range PostgreSQL stores",
        _ => "a value PostgreSQL does not accept",
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
