//! The named channels (sql/007): created for the names the token files give,
//! read into each instance's map of names and ids, and their open jobs
//! counted for the per-channel limit.

use tokio_postgres::types::Type;

use super::Sql;

/// Create the channels of these names that do not exist yet.
pub const ENSURE_CHANNELS: Sql = Sql {
    text: "INSERT INTO backchannel.channels (name)
    SELECT DISTINCT unnest($1::text[]) ORDER BY 1
    ON CONFLICT (name) DO NOTHING",
    types: &[Type::TEXT_ARRAY],
};

/// Every channel: id, name and limits.
pub const READ_CHANNELS: Sql = Sql {
    text: "SELECT id, name::text, max_open_jobs, max_waiting FROM backchannel.channels ORDER BY id",
    types: &[],
};

/// How many jobs of a channel are open, counted up to `$2` (the limit: a
/// count that reaches it need not go on).
pub const OPEN_JOBS: Sql = Sql {
    text: "SELECT count(*) FROM (
        SELECT 1 FROM backchannel.jobs
        WHERE channel_id = $1 AND completed_at IS NULL
        LIMIT $2
    ) AS open",
    types: &[Type::INT4, Type::INT8],
};
