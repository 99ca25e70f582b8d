//! Statements on `backchannel.jobs` for the API: insert (group commit), end
//! (answers and cancels in groups, undeliverable jobs), read and expire.

use tokio_postgres::types::Type;

use super::Sql;
use crate::job::{channel_done, channel_new};

/// The job with an idempotency key on a channel (keys are unique per channel).
pub const FIND_KEY: Sql = Sql {
    text: "SELECT id FROM backchannel.jobs
    WHERE channel_id = $2::int AND idempotency_key = $1::text",
    types: &[Type::TEXT, Type::INT4],
};

/// Insert a batch of jobs in one statement (group commit). Input arrays, one
/// element per request: kinds, payloads, timeouts in seconds, idempotency keys
/// (NULL for none). Each row gets its id before the insert, so that every
/// request finds its own job among the rows: `n` (1-based) is the request's
/// place in the batch, then the job's columns, then whether this request
/// created it. A key used twice in the batch makes one job for both (the
/// first creates it); a key that already exists answers with its job.
///
/// A key is inserted under its transaction-level advisory lock
/// (`$7`, `hashtext(key)`), the one `backchannel.submit` takes too
/// (sql/005): with `$6` false (the batch) the lock is only tried, and a
/// request whose key another session holds gets no row, never waits; it is
/// run again on its own with `$6` true, and waits for that key alone. A
/// request without a row (its key busy, or its key's job committed by a
/// concurrent transaction after this statement's snapshot) is tried again
/// that way.
///
/// `$8`, one element per request: the number of the stream held by this
/// instance that claims the job in the insert itself (stored `delivered`,
/// attempt 1, on that stream: no claim statement follows), or NULL (stored
/// `pending`, for the stream to claim).
///
/// `$9`, one element per request: the job's channel. Keys are unique per
/// channel: a key used on another channel is another job.
///
/// `$5`, one element per request ([`NewJobWake::InCommit`](crate::job::NewJobWake)):
/// the insert also sends `NOTIFY backchannel_new, '<channel id>'` for it
/// (once per channel: PostgreSQL folds identical notifications of a
/// transaction into one) in the same commit, for a stream held by another
/// instance: no transaction of its own, no wait for the notifier.
pub const INSERT_JOBS: Sql = Sql {
    text: concat!(
        "WITH input AS MATERIALIZED (
        SELECT n, in_kind, in_payload, in_secs, in_key, in_stream, in_notify, in_channel,
               nextval('backchannel.jobs_id_seq') AS new_id,
               CASE WHEN in_key IS NULL THEN true
                    WHEN $6 THEN (SELECT true FROM pg_advisory_xact_lock($7, hashtext(in_key)))
                    ELSE pg_try_advisory_xact_lock($7, hashtext(in_key)) END AS free
        FROM unnest($1::text[], $2::jsonb[], $3::float8[], $4::text[], $8::bigint[],
                    $5::bool[], $9::int[])
             WITH ORDINALITY AS i(in_kind, in_payload, in_secs, in_key, in_stream,
                                  in_notify, in_channel, n)
    ), ins AS (
        INSERT INTO backchannel.jobs
            (id, kind, payload, deadline, idempotency_key, state, attempts, stream_id, channel_id)
        OVERRIDING SYSTEM VALUE
        SELECT new_id, in_kind, in_payload, now() + make_interval(secs => in_secs), in_key,
               CASE WHEN in_stream IS NULL THEN 'pending' ELSE 'delivered' END,
               CASE WHEN in_stream IS NULL THEN 0 ELSE 1 END, in_stream, in_channel
        FROM input WHERE free ORDER BY n
        ON CONFLICT (channel_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING ",
        job_columns!(),
        ", idempotency_key
    ), notified AS (
        SELECT count(pg_notify('",
        channel_new!(),
        "', ins.channel_id::text)) FROM ins JOIN input ON input.new_id = ins.id WHERE in_notify
    )
    SELECT n, ",
        job_columns!(),
        ", true FROM input JOIN ins ON ins.id = input.new_id
    WHERE (SELECT count FROM notified) >= 0
    UNION ALL
    SELECT n, ",
        job_columns!(),
        ", false FROM input JOIN ins ON ins.idempotency_key = input.in_key
        AND ins.channel_id = input.in_channel AND ins.id <> input.new_id
    UNION ALL
    SELECT n, ",
        job_columns!(),
        ", false FROM input JOIN backchannel.jobs j ON j.idempotency_key = input.in_key
        AND j.channel_id = input.in_channel
    WHERE NOT EXISTS (SELECT 1 FROM ins
        WHERE ins.idempotency_key = input.in_key AND ins.channel_id = input.in_channel)"
    ),
    types: &[
        Type::TEXT_ARRAY,
        Type::JSONB_ARRAY,
        Type::FLOAT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::BOOL_ARRAY,
        Type::BOOL,
        Type::INT4,
        Type::INT8_ARRAY,
        Type::INT4_ARRAY,
    ],
};

/// End a batch of open jobs within their deadline in one statement (group
/// commit of answers and cancels). Input arrays: job ids (each at most once),
/// states, results, errors. A job row another session holds locked (a
/// report's `SELECT … FOR UPDATE`, a DBA's transaction) is skipped, never
/// waited for. Each row: whether this statement ended the job, then the
/// job's columns: the jobs it ended, and the jobs open in its snapshot that
/// it skipped (busy: end them on their own, [`FINISH_WAITING`]). A job not
/// returned was not open (terminal, past its deadline, or unknown: read it
/// to find out). With `$5`, each ended job's `NOTIFY backchannel_done,
/// '<id>'` leaves with this commit.
///
/// `$6`, one element per request: the channels its client may use, as an
/// array literal (`{1,3}`), or NULL for any. A job of another channel is
/// neither ended nor reported: to the request it is as if unknown.
pub const FINISH_JOBS: Sql = Sql {
    text: concat!(
        "WITH f AS MATERIALIZED (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::jsonb[], $6::text[])
             AS f(job, to_state, to_result, to_error, scope)
    ), mine AS MATERIALIZED (
        SELECT j.id FROM backchannel.jobs j JOIN f ON f.job = j.id
        WHERE j.completed_at IS NULL AND j.deadline > now()
          AND (f.scope IS NULL OR j.channel_id = ANY(f.scope::int[]))
    ), free AS MATERIALIZED (
        SELECT id FROM backchannel.jobs
        WHERE id IN (SELECT id FROM mine) AND completed_at IS NULL AND deadline > now()
        FOR UPDATE SKIP LOCKED
    ), ended AS (
        UPDATE backchannel.jobs
        SET state = f.to_state, result = f.to_result, error = f.to_error, completed_at = now()
        FROM f
        WHERE id = f.job AND id IN (SELECT id FROM free)
          AND completed_at IS NULL AND deadline > now()
        RETURNING ",
        job_columns!(),
        ", CASE WHEN $5 THEN pg_notify('",
        channel_done!(),
        "', id::text) END AS notified
    )
    SELECT true, ",
        job_columns!(),
        " FROM ended
    UNION ALL
    SELECT false, ",
        job_columns!(),
        " FROM backchannel.jobs
    WHERE id IN (SELECT id FROM mine) AND id NOT IN (SELECT id FROM free)
      AND completed_at IS NULL AND deadline > now()"
    ),
    types: &[
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::JSONB_ARRAY,
        Type::JSONB_ARRAY,
        Type::BOOL,
        Type::TEXT_ARRAY,
    ],
};

/// End one open job within its deadline, waiting for its row's lock: a
/// request [`FINISH_JOBS`] found busy, on its own. Parameters: id, state,
/// result, error, whether to send its `backchannel_done` in the commit, the
/// client's channels (as in [`FINISH_JOBS`]). Returns the job when it ended it.
pub const FINISH_WAITING: Sql = Sql {
    text: concat!(
        "UPDATE backchannel.jobs
    SET state = $2::text, result = $3::jsonb, error = $4::jsonb, completed_at = now()
    WHERE id = $1::bigint AND completed_at IS NULL AND deadline > now()
      AND ($6::text IS NULL OR channel_id = ANY($6::text::int[]))
    RETURNING ",
        job_columns!(),
        ", CASE WHEN $5 THEN pg_notify('",
        channel_done!(),
        "', id::text) END AS notified"
    ),
    types: &[
        Type::INT8,
        Type::TEXT,
        Type::JSONB,
        Type::JSONB,
        Type::BOOL,
        Type::TEXT,
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
