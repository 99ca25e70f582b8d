//! How the query pool sends its statements: prepared (named, once per
//! connection), until `DATABASE_URL` turns out to go through a transaction
//! pooler that does not keep prepared statements (PgBouncer before 1.21);
//! unnamed from then on, for good (or from the start, with
//! `BACKCHANNEL_STATEMENTS=unnamed`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::error::SqlState;

/// Whether the query pool sends its statements unnamed. Shared by the pool's
/// statements and its set-up of new connections (none once unnamed: behind a
/// transaction pooler a session setting would reach the pooler's other
/// clients).
#[derive(Debug, Clone)]
pub struct Naming(Arc<AtomicBool>);

impl Naming {
    /// Unnamed from the start, or prepared until the first sign of a pooler.
    pub fn new(unnamed: bool) -> Naming {
        Naming(Arc::new(AtomicBool::new(unnamed)))
    }

    /// Whether statements go out unnamed now.
    pub fn unnamed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Whether `error`, from preparing or running a prepared statement, is a
    /// transaction pooler's doing: this connection's statement is missing on
    /// the server connection it landed on (26000), or that server connection
    /// already has a statement of that name, another client's (42P05).
    /// Either way the statement never ran: the server refused its Parse, or
    /// its Bind (and skipped the Execute after it). Then the pool switches to
    /// unnamed statements for good (said once, at the switch), and the
    /// caller sends the statement again, unnamed.
    pub(super) fn switch_on(&self, error: &tokio_postgres::Error) -> bool {
        let Some(code) = error.code() else {
            return false;
        };
        if *code != SqlState::INVALID_SQL_STATEMENT_NAME && *code != SqlState::DUPLICATE_PSTATEMENT
        {
            return false;
        }
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                sqlstate = code.code(),
                "a prepared statement of a pooled connection was missing or another client's: \
                 DATABASE_URL goes through a transaction pooler that does not keep prepared \
                 statements (PgBouncer before 1.21). The query pool sends its statements \
                 unnamed from now on, and sent this one again (it had not run); \
                 BACKCHANNEL_STATEMENTS=unnamed starts that way"
            );
        }
        true
    }
}
