//! Sessions: the settings every new session gets, and the check that a
//! dedicated session is one (the same backend, LISTEN and session locks
//! persisting between statements).

/// Settings of every dedicated session (LISTEN, the stream lock, migrations,
/// the start-up checks), whatever the database or role sets: such a session
/// sits idle for hours by design (`idle_session_timeout` would end it), and
/// bounds its own statements (the claim by the stream's claim timeout, the
/// takeover's wait by its own `statement_timeout`). Only the parameters this
/// server knows are set (`idle_session_timeout` is PostgreSQL 14+,
/// `transaction_timeout` 17+).
pub const DEDICATED_SESSION_SETUP: &str = "SELECT set_config(name, '0', false) FROM pg_settings
    WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout',
                   'idle_session_timeout', 'transaction_timeout')";

/// Settings of a new pooled connection when it is a session of its own (not
/// behind a transaction pooler, where a SET would reach other clients): an
/// idle pooled connection must not be closed under the broker. The
/// database's `statement_timeout` stays in force (a statement that hits it
/// is a 503).
pub const POOLED_SESSION_SETUP: &str = "SELECT set_config(name, '0', false) FROM pg_settings
    WHERE name = 'idle_session_timeout'";

/// `synchronous_commit` for a new session (`BACKCHANNEL_SYNCHRONOUS_COMMIT`;
/// the value is one of the names the settings accept).
pub fn synchronous_commit(value: &str) -> String {
    format!("SET synchronous_commit TO {value}")
}

/// Session check: the backend of this statement.
pub const BACKEND_PID: &str = "SELECT pg_backend_pid()";

/// Session check: LISTEN on a probe channel, then find it from another statement.
pub const PROBE_LISTEN: &str = "LISTEN backchannel_probe";

pub const PROBE_LISTENING: &str = "SELECT 'backchannel_probe' IN (SELECT pg_listening_channels())";

pub const PROBE_UNLISTEN: &str = "UNLISTEN backchannel_probe";

/// Session check: a session lock taken by one statement is seen by the next.
pub const PROBE_LOCK: &str = "SELECT pg_try_advisory_lock($1, $2)";

pub const PROBE_LOCK_HELD: &str = "SELECT count(*) FROM pg_locks
    WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted
      AND classid = ($1::int)::oid AND objid = ($2::int)::oid AND objsubid = 2";

pub const PROBE_UNLOCK: &str = "SELECT pg_advisory_unlock($1, $2)";
