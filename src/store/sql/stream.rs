//! Statements of the stream's own session: its settings, the cluster's one
//! stream lock, the holder record, the claim; and who holds the stream, read
//! through the pool.

use std::time::Duration;

use tokio_postgres::types::Type;

use super::Sql;
use crate::job::channel_holder;

/// Claim the next open jobs of the stream's channel (`$3`) not yet sent on
/// this stream, oldest first, and mark them delivered (through
/// `jobs_open_idx`, led by the channel: another channel's backlog is never
/// walked). Selected by state, never by an id cursor: ids are not
/// commit-ordered. The outer update finds its rows by primary key (`id = ANY`),
/// so no plan of it joins or scans the table. Rows come back in no set order.
pub const CLAIM_JOBS: &str = concat!(
    "UPDATE backchannel.jobs
    SET state = 'delivered', attempts = attempts + 1, stream_id = $1
    WHERE id = ANY(ARRAY(
        SELECT id FROM backchannel.jobs
        WHERE channel_id = $3 AND completed_at IS NULL AND deadline > now()
          AND stream_id IS DISTINCT FROM $1
        ORDER BY id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id, kind, payload, ",
    deadline!(),
    ", attempts"
);

/// Settings of the stream's own session, which runs the claim for hours.
/// - The claim is prepared once, and PostgreSQL keeps a generic plan made from
///   the statistics of that moment: planned on a small table it would keep a
///   sequential or bitmap scan plus a sort (measured: 2-7 ms per claim under
///   load, with dead index entries piling up). With these two off the claim
///   always walks `jobs_open_idx` in id order and stops at the limit; a plain
///   index scan also marks dead entries, so later claims skip them.
/// - A claim need not wait for its WAL flush: if PostgreSQL crashes before the
///   flush, the claim is lost and the job is simply sent again (at-least-once),
///   which a crash causes anyway since it ends the stream. Jobs and answers
///   still commit with the server's (or BACKCHANNEL_SYNCHRONOUS_COMMIT's) setting.
pub const STREAM_SESSION_SETUP: &str = "SET enable_seqscan TO off;
    SET enable_bitmapscan TO off;
    SET synchronous_commit TO off";

/// Take the stream lock if it is free (on the stream's own session).
pub const TRY_STREAM_LOCK: &str = "SELECT pg_try_advisory_lock($1, $2)";

/// Wait for the stream lock (bounded by the session's statement_timeout).
pub const WAIT_STREAM_LOCK: &str = "SELECT pg_advisory_lock($1, $2)";

/// Record who holds channel `$4`'s stream and number the new stream. The
/// default channel's record keeps `singleton = true`, which the previous
/// release's own statement names (sql/007).
pub const REGISTER_HOLDER: &str = "INSERT INTO backchannel.stream_holder
        (singleton, channel_id, listener_id, instance, pid, stream_id, since, advertise_url)
    VALUES (CASE WHEN $4::int = 1 THEN true END, $4::int, $1, $2, pg_backend_pid(),
            nextval('backchannel.stream_seq'), now(), $3)
    ON CONFLICT (channel_id) DO UPDATE SET
        listener_id = EXCLUDED.listener_id, instance = EXCLUDED.instance,
        pid = EXCLUDED.pid, stream_id = EXCLUDED.stream_id, since = EXCLUDED.since,
        advertise_url = EXCLUDED.advertise_url
    RETURNING stream_id";

/// Tell the instances that the holder changed (after registering, after
/// releasing), in a transaction of its own: a full notification queue then
/// fails only this, never the stream (the forwarding instances also read the
/// holder again after a failed forward).
/// Its payload is the channel's id.
pub const HOLDER_MOVED: &str =
    concat!("SELECT pg_notify('", channel_holder!(), "', $1::int::text)");

/// Where the other instances reach the stream's holder: the advertised URL
/// of the holder record whose backend holds the stream lock now (a record
/// left by a holder that is gone names nobody), and its instance's name.
pub const HOLDER_ADDRESS: Sql = Sql {
    text: "SELECT h.advertise_url, h.instance
    FROM pg_locks l
    JOIN backchannel.stream_holder h ON h.pid = l.pid AND h.channel_id = $3
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.classid = ($1::int)::oid AND l.objid = ($2::int)::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND h.advertise_url IS NOT NULL",
    types: &[Type::INT4, Type::INT4, Type::INT4],
};

/// Forget the holder record of this session (a stream closing cleanly).
pub const RELEASE_HOLDER: &str =
    "DELETE FROM backchannel.stream_holder WHERE pid = pg_backend_pid()";

/// The backend holding a channel's stream lock (`$1`, `$2`) in this
/// database, if any, with the channel's (`$3`) holder record when it
/// describes that backend.
pub const CURRENT_HOLDER: Sql = Sql {
    text: "SELECT l.pid, h.listener_id, h.instance, h.since
    FROM pg_locks l
    LEFT JOIN backchannel.stream_holder h ON h.pid = l.pid AND h.channel_id = $3
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.classid = ($1::int)::oid AND l.objid = ($2::int)::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    types: &[Type::INT4, Type::INT4, Type::INT4],
};

/// End the session of a stale stream holder (takeover by the same listener id).
pub const TERMINATE_BACKEND: &str = "SELECT pg_terminate_backend($1)";

/// Bound the takeover's wait for the stale holder's lock (milliseconds only).
pub fn takeover_timeout(wait: Duration) -> String {
    format!("SET statement_timeout = {}", wait.as_millis())
}

/// Back to no bound once the takeover's wait is over.
pub const NO_STATEMENT_TIMEOUT: &str = "SET statement_timeout = 0";
