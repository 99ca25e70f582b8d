//! Every SQL statement the broker runs, in one place.
//!
//! The statements of the query pool are [`Sql`]: their text and the types of
//! their parameters, so that they can go out as unnamed statements through a
//! transaction pooler (`BACKCHANNEL_STATEMENTS=unnamed`). The types are those
//! PostgreSQL infers when it prepares the text (a test holds them equal).

use tokio_postgres::types::Type;

use crate::job::{CHANNEL_DONE, channel_done, channel_new};

/// A statement of the query pool: its text and its parameters' types.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    pub text: &'static str,
    pub types: &'static [Type],
}

/// The deadline as the broker reads it: clamped to the years RFC 3339 can
/// write (0001-9999), so that a row another application wrote with a deadline
/// of `infinity` or beyond year 9999 still reads (as 9999-12-31, "never").
/// `created_at` and `completed_at` are only ever set to `now()`.
macro_rules! deadline {
    () => {
        "greatest(least(deadline, '9999-12-31 23:59:59.999999+00'), '0001-01-01 00:00:00+00') AS deadline"
    };
}

/// The columns of a job, in the order `job_from_row` reads them.
macro_rules! job_columns {
    () => {
        concat!(
            "id, kind, state, payload, result, error, attempts, created_at, ",
            deadline!(),
            ", completed_at"
        )
    };
}

/// Namespace of the broker's advisory locks (the first key of the two-key form).
pub const LOCK_NAMESPACE: i32 = 0x6263_0001;
/// Second key: the stream lock (session level, one listener in the cluster).
pub const LOCK_STREAM: i32 = 1;
/// Second key: migrations (transaction level).
pub const LOCK_MIGRATE: i32 = 2;
/// Second key: the reaper's tick (transaction level, one instance per tick).
pub const LOCK_REAPER: i32 = 3;

/// The job with an idempotency key.
pub const FIND_KEY: Sql = Sql {
    text: "SELECT id FROM backchannel.jobs WHERE idempotency_key = $1::text",
    types: &[Type::TEXT],
};

/// Insert a batch of jobs in one statement (group commit). Input arrays, one
/// element per request: kinds, payloads, timeouts in seconds, idempotency keys
/// (NULL for none). Each row gets its id before the insert, so that every
/// request finds its own job among the rows: `n` (1-based) is the request's
/// place in the batch, then the job's columns, then whether this request
/// created it. A key used twice in the batch makes one job for both (the
/// first creates it); a key that already exists answers with its job. A
/// request without a row (its key's job was committed by a concurrent
/// transaction after this statement's snapshot) is tried again.
///
/// With `$5`, the insert also sends `NOTIFY backchannel_new` (once: PostgreSQL
/// folds identical notifications of a transaction into one) in the same
/// commit, for a stream held by another instance: no transaction of its own,
/// no wait for the notifier.
pub const INSERT_JOBS: Sql = Sql {
    text: concat!(
    "WITH input AS MATERIALIZED (
        SELECT n, in_kind, in_payload, in_secs, in_key,
               nextval('backchannel.jobs_id_seq') AS new_id
        FROM unnest($1::text[], $2::jsonb[], $3::float8[], $4::text[])
             WITH ORDINALITY AS i(in_kind, in_payload, in_secs, in_key, n)
    ), ins AS (
        INSERT INTO backchannel.jobs (id, kind, payload, deadline, idempotency_key)
        OVERRIDING SYSTEM VALUE
        SELECT new_id, in_kind, in_payload, now() + make_interval(secs => in_secs), in_key
        FROM input ORDER BY n
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING ",
    job_columns!(),
    ", idempotency_key, CASE WHEN $5 THEN pg_notify('",
    channel_new!(),
    "', '') END AS notified
    )
    SELECT n, ",
    job_columns!(),
    ", true FROM input JOIN ins ON ins.id = input.new_id
    UNION ALL
    SELECT n, ",
    job_columns!(),
    ", false FROM input JOIN ins ON ins.idempotency_key = input.in_key AND ins.id <> input.new_id
    UNION ALL
    SELECT n, ",
    job_columns!(),
    ", false FROM input JOIN backchannel.jobs j ON j.idempotency_key = input.in_key
    WHERE NOT EXISTS (SELECT 1 FROM ins WHERE ins.idempotency_key = input.in_key)"
),
    types: &[
        Type::TEXT_ARRAY,
        Type::JSONB_ARRAY,
        Type::FLOAT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::BOOL,
    ],
};

/// End a batch of open jobs within their deadline in one statement (group
/// commit of answers and cancels). Input arrays: job ids (each at most once),
/// states, results, errors. Returns the jobs it ended; a job not returned was
/// not open (terminal, past its deadline, or unknown: read it to find out).
/// Each ended job's `NOTIFY backchannel_done, '<id>'` leaves with this commit.
pub const FINISH_JOBS: Sql = Sql {
    text: concat!(
        "UPDATE backchannel.jobs
    SET state = f.to_state, result = f.to_result, error = f.to_error, completed_at = now()
    FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::jsonb[])
         AS f(job, to_state, to_result, to_error)
    WHERE id = f.job AND completed_at IS NULL AND deadline > now()
    RETURNING ",
        job_columns!(),
        ", pg_notify('",
        channel_done!(),
        "', id::text)"
    ),
    types: &[
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::JSONB_ARRAY,
        Type::JSONB_ARRAY,
    ],
};

/// Read one job, and whether it is open and past its deadline (then expire it).
/// A plain indexed read: cheap to plan, cheap to run, the common case.
pub const READ_JOB: Sql = Sql {
    text: concat!(
        "SELECT ",
        job_columns!(),
        ", completed_at IS NULL AND deadline <= now()
    FROM backchannel.jobs WHERE id = $1"
    ),
    types: &[Type::INT8],
};

/// Expire one open job past its deadline.
pub const EXPIRE_JOB: Sql = Sql {
    text: concat!(
        "UPDATE backchannel.jobs SET state = 'expired', completed_at = now()
    WHERE id = $1 AND completed_at IS NULL AND deadline <= now()
    RETURNING ",
        job_columns!()
    ),
    types: &[Type::INT8],
};

/// Read jobs by id; an open job past its deadline becomes `expired` on the way.
/// The last column says whether this statement expired it (then notify).
pub const READ_JOBS: Sql = Sql {
    text: concat!(
        "WITH expired AS (
        UPDATE backchannel.jobs SET state = 'expired', completed_at = now()
        WHERE id = ANY($1) AND completed_at IS NULL AND deadline <= now()
        RETURNING ",
        job_columns!(),
        ")
    SELECT *, true FROM expired
    UNION ALL
    SELECT ",
        job_columns!(),
        ", false FROM backchannel.jobs
    WHERE id = ANY($1) AND id NOT IN (SELECT id FROM expired)"
    ),
    types: &[Type::INT8_ARRAY],
};

/// Read jobs by id, as they are (same row shape as `READ_JOBS`, never
/// expiring): for jobs another instance just ended, which are terminal.
pub const PEEK_JOBS: Sql = Sql {
    text: concat!(
        "SELECT ",
        job_columns!(),
        ", false FROM backchannel.jobs WHERE id = ANY($1)"
    ),
    types: &[Type::INT8_ARRAY],
};

/// Whether a terminal job carries exactly this answer (jsonb equality).
pub const ANSWER_MATCHES: Sql = Sql {
    text: "SELECT CASE WHEN $2 = 'done'
        THEN state = 'done' AND result = $3
        ELSE state = 'failed' AND error = $4 END
    FROM backchannel.jobs WHERE id = $1",
    types: &[Type::INT8, Type::TEXT, Type::JSONB, Type::JSONB],
};

/// End a job the stream cannot send (a row another application wrote that no
/// listener could read): `failed`, with the reason as its error.
pub const FAIL_UNDELIVERABLE: Sql = Sql {
    text: concat!(
        "UPDATE backchannel.jobs
    SET state = 'failed', error = $2, completed_at = now()
    WHERE id = $1 AND completed_at IS NULL
    RETURNING ",
        job_columns!()
    ),
    types: &[Type::INT8, Type::JSONB],
};

/// Claim the next open jobs not yet sent on this stream, oldest first, and
/// mark them delivered. Selected by state, never by an id cursor: ids are not
/// commit-ordered. The outer update finds its rows by primary key (`id = ANY`),
/// so no plan of it joins or scans the table. Rows come back in no set order.
pub const CLAIM_JOBS: &str = concat!(
    "UPDATE backchannel.jobs
    SET state = 'delivered', attempts = attempts + 1, stream_id = $1
    WHERE id = ANY(ARRAY(
        SELECT id FROM backchannel.jobs
        WHERE completed_at IS NULL AND deadline > now()
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

/// Record who holds the stream and number the new stream.
pub const REGISTER_HOLDER: &str = "INSERT INTO backchannel.stream_holder
        (singleton, listener_id, instance, pid, stream_id, since)
    VALUES (true, $1, $2, pg_backend_pid(), nextval('backchannel.stream_seq'), now())
    ON CONFLICT (singleton) DO UPDATE SET
        listener_id = EXCLUDED.listener_id, instance = EXCLUDED.instance,
        pid = EXCLUDED.pid, stream_id = EXCLUDED.stream_id, since = EXCLUDED.since
    RETURNING stream_id";

/// Forget the holder record of this session (a stream closing cleanly).
pub const RELEASE_HOLDER: &str =
    "DELETE FROM backchannel.stream_holder WHERE pid = pg_backend_pid()";

/// The backend holding the stream lock in this database, if any, with the
/// holder record when it describes that backend.
pub const CURRENT_HOLDER: Sql = Sql {
    text: "SELECT l.pid, h.listener_id, h.instance, h.since
    FROM pg_locks l
    LEFT JOIN backchannel.stream_holder h ON h.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.classid = ($1::int)::oid AND l.objid = ($2::int)::oid AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    types: &[Type::INT4, Type::INT4],
};

/// End the session of a stale stream holder (takeover by the same listener id).
pub const TERMINATE_BACKEND: &str = "SELECT pg_terminate_backend($1)";

/// Send coalesced notifications in one transaction: one `backchannel_done`
/// per id and, when asked, one `backchannel_new`.
pub const NOTIFY_BATCH: Sql = Sql {
    text: concat!(
        "SELECT count(pg_notify(channel, payload)) FROM (
        SELECT '",
        channel_done!(),
        "' AS channel, id::text AS payload FROM unnest($1::bigint[]) AS id
        UNION ALL
        SELECT '",
        channel_new!(),
        "', '' WHERE $2
    ) AS n"
    ),
    types: &[Type::INT8_ARRAY, Type::BOOL],
};

/// One reaper tick as one statement (one transaction, nothing to prepare on
/// each pooled connection): take the tick's lock if no other instance holds it,
/// expire open jobs past their deadline (notifying each at commit) and delete
/// terminal jobs older than the retention. Rows: one per expired job
/// (`mine`, id, age in seconds), then one summary (`mine`, NULL, deleted count).
/// Formatted with numbers only (`{ns}`, `{key}`, `{batch}`, `{retention}`).
pub fn reap_tick(ns: i32, key: i32, batch: i64, retention_secs: f64) -> String {
    format!(
        "WITH lock AS MATERIALIZED (SELECT pg_try_advisory_xact_lock({ns}, {key}) AS mine),
        due AS (
            SELECT id FROM backchannel.jobs
            WHERE (SELECT mine FROM lock) AND completed_at IS NULL AND deadline <= now()
            ORDER BY deadline
            LIMIT {batch}
            FOR UPDATE SKIP LOCKED
        ), expired AS (
            UPDATE backchannel.jobs j SET state = 'expired', completed_at = now()
            FROM due WHERE j.id = due.id
            RETURNING j.id, extract(epoch FROM j.completed_at - j.created_at)::float8 AS age
        ), old AS (
            DELETE FROM backchannel.jobs WHERE id IN (
                SELECT id FROM backchannel.jobs
                WHERE (SELECT mine FROM lock)
                  AND completed_at < now() - make_interval(secs => {retention_secs:.6})
                LIMIT {batch}
            )
            RETURNING 1
        )
        SELECT (SELECT mine FROM lock)::text, id::text, age::text,
               pg_notify('{CHANNEL_DONE}', id::text)::text
        FROM expired
        UNION ALL
        SELECT (SELECT mine FROM lock)::text, NULL, (SELECT count(*) FROM old)::text, NULL"
    )
}

/// Jobs by state, and the age in seconds of the oldest pending job.
pub const STATS: Sql = Sql {
    text: "SELECT
        (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
         FROM (SELECT state, count(*) AS n FROM backchannel.jobs GROUP BY state) AS s),
        (SELECT extract(epoch FROM now() - min(created_at))::float8
         FROM backchannel.jobs WHERE state = 'pending')",
    types: &[],
};

/// The age in seconds of the oldest pending job (NULL when none), for the
/// metrics: reads only open jobs, through their partial index.
pub const OLDEST_PENDING_AGE: Sql = Sql {
    text: "SELECT extract(epoch FROM now() - min(created_at))::float8
    FROM backchannel.jobs WHERE completed_at IS NULL AND state = 'pending'",
    types: &[],
};

/// How full PostgreSQL's notification queue is (0..1).
pub const NOTIFICATION_QUEUE_USAGE: Sql = Sql {
    text: "SELECT pg_notification_queue_usage()",
    types: &[],
};

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
/// First key of the probe lock; the second is the backend's pid, so that
/// instances starting together never contend for it.
pub const LOCK_PROBE_NAMESPACE: i32 = 0x6263_0002;

/// Readiness: the database answers.
pub const PING: Sql = Sql {
    text: "SELECT 1",
    types: &[],
};

/// Every statement of the query pool, by name (for the test that holds the
/// declared parameter types equal to PostgreSQL's).
pub const POOLED: &[(&str, Sql)] = &[
    ("FIND_KEY", FIND_KEY),
    ("INSERT_JOBS", INSERT_JOBS),
    ("FINISH_JOBS", FINISH_JOBS),
    ("READ_JOB", READ_JOB),
    ("EXPIRE_JOB", EXPIRE_JOB),
    ("READ_JOBS", READ_JOBS),
    ("PEEK_JOBS", PEEK_JOBS),
    ("ANSWER_MATCHES", ANSWER_MATCHES),
    ("FAIL_UNDELIVERABLE", FAIL_UNDELIVERABLE),
    ("NOTIFY_BATCH", NOTIFY_BATCH),
    ("CURRENT_HOLDER", CURRENT_HOLDER),
    ("STATS", STATS),
    ("OLDEST_PENDING_AGE", OLDEST_PENDING_AGE),
    ("NOTIFICATION_QUEUE_USAGE", NOTIFICATION_QUEUE_USAGE),
    ("PING", PING),
    ("READ_ONLY", READ_ONLY),
];

/// Readiness: the database answers, and whether it takes writes (a hot
/// standby, or `default_transaction_read_only`, does not).
pub const READ_ONLY: Sql = Sql {
    text: "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
    types: &[],
};

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

/// Whether `backchannel.schema_migrations` exists (read from the catalog:
/// needs no right on the schema).
pub const LEDGER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'backchannel' AND c.relname = 'schema_migrations')";

/// The rights the runtime role needs (sql/grants.sql), each with whether the
/// current role holds it; NULL when the object does not exist. Objects are
/// found through the catalog, so the check needs no right itself.
pub const RUNTIME_RIGHTS: &str = "SELECT r.privilege || ' on ' || r.label,
        CASE r.kind
            WHEN 'schema' THEN has_schema_privilege(n.oid, r.privilege)
            WHEN 'table' THEN has_table_privilege(c.oid, r.privilege)
            WHEN 'sequence' THEN has_sequence_privilege(c.oid, r.privilege)
            WHEN 'function' THEN has_function_privilege(p.oid, r.privilege)
        END
    FROM (VALUES
        (1, 'schema', 'backchannel', 'schema backchannel', 'USAGE'),
        (2, 'table', 'schema_migrations', 'backchannel.schema_migrations', 'SELECT'),
        (3, 'table', 'jobs', 'backchannel.jobs', 'SELECT'),
        (4, 'table', 'jobs', 'backchannel.jobs', 'INSERT'),
        (5, 'table', 'jobs', 'backchannel.jobs', 'UPDATE'),
        (6, 'table', 'jobs', 'backchannel.jobs', 'DELETE'),
        (7, 'table', 'stream_holder', 'backchannel.stream_holder', 'SELECT'),
        (8, 'table', 'stream_holder', 'backchannel.stream_holder', 'INSERT'),
        (9, 'table', 'stream_holder', 'backchannel.stream_holder', 'UPDATE'),
        (10, 'table', 'stream_holder', 'backchannel.stream_holder', 'DELETE'),
        (11, 'sequence', 'stream_seq', 'sequence backchannel.stream_seq', 'USAGE'),
        (12, 'sequence', 'jobs_id_seq', 'sequence backchannel.jobs_id_seq', 'USAGE'),
        (13, 'function', 'submit', 'function backchannel.submit', 'EXECUTE')
    ) AS r(ord, kind, object, label, privilege)
    LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'backchannel'
    LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.object
    LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid AND p.proname = r.object
    ORDER BY r.ord";

/// Who the broker is in the database.
pub const CURRENT_ROLE: &str = "SELECT current_user::text";
