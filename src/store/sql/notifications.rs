//! The notification channels: LISTEN on the instance's own session, and the
//! coalesced NOTIFYs of the notifier. (Answers, cancels and inserts notify
//! inside their own statements: [`super::jobs`].)

use tokio_postgres::types::Type;

use super::Sql;
use crate::job::{channel_done, channel_holder, channel_new};

/// Listen on the three channels (on the LISTEN session).
pub const LISTEN: &str = concat!(
    "LISTEN ",
    channel_new!(),
    "; LISTEN ",
    channel_done!(),
    "; LISTEN ",
    channel_holder!()
);

/// Send coalesced notifications in one transaction: one `backchannel_done`
/// per id and one `backchannel_new` per channel id of `$2`.
pub const NOTIFY_BATCH: Sql = Sql {
    text: concat!(
        "SELECT count(pg_notify(channel, payload)) FROM (
        SELECT '",
        channel_done!(),
        "' AS channel, id::text AS payload FROM unnest($1::bigint[]) AS id
        UNION ALL
        SELECT '",
        channel_new!(),
        "', ch::text FROM unnest($2::int[]) AS ch
    ) AS n"
    ),
    types: &[Type::INT8_ARRAY, Type::INT4_ARRAY],
};
