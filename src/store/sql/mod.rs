//! Every SQL statement the broker runs, grouped by what it touches:
//!
//! - [`jobs`]: the jobs of the API (insert, end, read, expire);
//! - [`stream`]: the stream's session (its lock, the holder record, the claim);
//! - [`channels`]: the named channels (created from the token files, read);
//! - [`notifications`]: LISTEN and the coalesced NOTIFYs;
//! - [`maintenance`]: the reaper's tick;
//! - [`status`]: what operators and the readiness check read;
//! - [`session`]: the settings of new sessions, and the check that a session is one;
//! - [`schema`]: the migrations' ledger, and the rights of the runtime role.
//!
//! The statements of the query pool are [`Sql`]: their text and the types of
//! their parameters, so that they can go out as unnamed statements through a
//! transaction pooler (`BACKCHANNEL_STATEMENTS=unnamed`). The types are those
//! PostgreSQL infers when it prepares the text (a test holds them equal,
//! statement by statement of [`POOLED`]).

use tokio_postgres::types::Type;

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
            ", completed_at, channel_id"
        )
    };
}

pub mod channels;
pub mod jobs;
pub mod maintenance;
pub mod notifications;
pub mod schema;
pub mod session;
pub mod status;
pub mod stream;

/// Namespace of the broker's advisory locks (the first key of the two-key form).
pub const LOCK_NAMESPACE: i32 = 0x6263_0001;

/// Second key: the default channel's stream lock (session level, one
/// listener in the cluster). Unchanged since the first release, so that
/// instances of two releases never hold two default streams at once.
pub const LOCK_STREAM: i32 = 1;

/// First key of the other channels' stream locks; the second is the
/// channel's id (exact: no hash of the name, which could collide).
pub const LOCK_CHANNEL_NAMESPACE: i32 = 0x6263_0004;

/// The two keys of `channel`'s stream lock.
pub fn stream_lock(channel: crate::job::ChannelId) -> (i32, i32) {
    if channel == crate::job::DEFAULT_CHANNEL {
        (LOCK_NAMESPACE, LOCK_STREAM)
    } else {
        (LOCK_CHANNEL_NAMESPACE, channel)
    }
}

/// Second key: migrations (transaction level).
pub const LOCK_MIGRATE: i32 = 2;

/// Second key: the reaper's tick (transaction level, one instance per tick).
pub const LOCK_REAPER: i32 = 3;

/// First key of the idempotency keys' locks (transaction level); the second
/// is `hashtext(key)`. `backchannel.submit` (sql/005) takes the same.
pub const LOCK_KEY_NAMESPACE: i32 = 0x6263_0003;

/// First key of the probe lock; the second is the backend's pid, so that
/// instances starting together never contend for it.
pub const LOCK_PROBE_NAMESPACE: i32 = 0x6263_0002;

/// Every statement of the query pool, by name (for the test that holds the
/// declared parameter types equal to PostgreSQL's).
pub const POOLED: &[(&str, Sql)] = &[
    ("FIND_KEY", jobs::FIND_KEY),
    ("INSERT_JOBS", jobs::INSERT_JOBS),
    ("FINISH_JOBS", jobs::FINISH_JOBS),
    ("FINISH_WAITING", jobs::FINISH_WAITING),
    ("READ_JOB", jobs::READ_JOB),
    ("EXPIRE_JOB", jobs::EXPIRE_JOB),
    ("READ_JOBS", jobs::READ_JOBS),
    ("PEEK_JOBS", jobs::PEEK_JOBS),
    ("ANSWER_MATCHES", jobs::ANSWER_MATCHES),
    ("FAIL_UNDELIVERABLE", jobs::FAIL_UNDELIVERABLE),
    ("NOTIFY_BATCH", notifications::NOTIFY_BATCH),
    ("ENSURE_CHANNELS", channels::ENSURE_CHANNELS),
    ("READ_CHANNELS", channels::READ_CHANNELS),
    ("OPEN_JOBS", channels::OPEN_JOBS),
    ("CURRENT_HOLDER", stream::CURRENT_HOLDER),
    ("HOLDER_ADDRESS", stream::HOLDER_ADDRESS),
    ("STATS", status::STATS),
    ("OLDEST_PENDING_AGE", status::OLDEST_PENDING_AGE),
    ("NOTIFICATION_QUEUE_USAGE", status::NOTIFICATION_QUEUE_USAGE),
    ("PING", status::PING),
    ("READ_ONLY", status::READ_ONLY),
];
