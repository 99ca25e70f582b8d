//! A hint for the operator whose `DATABASE_URL` goes through a transaction
//! pooler while the pool prepares its statements.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::error::SqlState;

/// Pass `error` on; the first time a prepared statement of this connection
/// turns out missing (26000) or another's (42P05), which is what a
/// transaction pooler without prepared statement support does, say what to set.
pub(super) fn hint(error: tokio_postgres::Error) -> tokio_postgres::Error {
    static SAID: AtomicBool = AtomicBool::new(false);
    let mixed = error.code().is_some_and(|code| {
        *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT
    });
    if mixed && !SAID.swap(true, Ordering::Relaxed) {
        tracing::error!(
            sqlstate = error.code().map(|c| c.code()),
            "a prepared statement of a pooled connection is missing or not ours: DATABASE_URL \
             seems to go through a transaction pooler that does not keep prepared statements \
             (PgBouncer before 1.21); set BACKCHANNEL_STATEMENTS=unnamed"
        );
    }
    error
}
