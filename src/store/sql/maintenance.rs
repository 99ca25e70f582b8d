//! The reaper's tick: expire what passed its deadline, delete what is old.

use crate::job::CHANNEL_DONE;

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
