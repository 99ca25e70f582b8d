//! What operators, `/metrics` and the readiness check read.

use tokio_postgres::types::Type;

use super::Sql;

/// A channel's jobs by state, and the age in seconds of its oldest pending job.
pub const STATS: Sql = Sql {
    text: "SELECT
        (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
         FROM (SELECT state, count(*) AS n FROM backchannel.jobs
               WHERE channel_id = $1 GROUP BY state) AS s),
        (SELECT extract(epoch FROM now() - min(created_at))::float8
         FROM backchannel.jobs WHERE channel_id = $1 AND state = 'pending')",
    types: &[Type::INT4],
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

/// Readiness: the database answers.
pub const PING: Sql = Sql {
    text: "SELECT 1",
    types: &[],
};

/// Readiness: the database answers, and whether it takes writes (a hot
/// standby, or `default_transaction_read_only`, does not).
pub const READ_ONLY: Sql = Sql {
    text: "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
    types: &[],
};
