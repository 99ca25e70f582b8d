//! The start-up check that a dedicated session is a real session: behind a
//! transaction-pooling proxy, LISTEN and session advisory locks would
//! silently stop working. And [`who_and_where`], what `serve --check` says
//! of a connection.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::sql::LOCK_PROBE_NAMESPACE;
use super::sql::schema::WHO_AND_WHERE;
use super::sql::session::{
    BACKEND_PID, PROBE_LISTEN, PROBE_LISTENING, PROBE_LOCK, PROBE_LOCK_HELD, PROBE_UNLISTEN,
    PROBE_UNLOCK,
};

/// Check that `client` is a real session: the same backend across statements,
/// LISTEN and session advisory locks persisting between them. Returns what is
/// wrong, if anything.
pub async fn probe_session(client: &Client) -> Result<Option<&'static str>, tokio_postgres::Error> {
    let first: i32 = client.query_one(BACKEND_PID, &[]).await?.get(0);
    let second: i32 = client.query_one(BACKEND_PID, &[]).await?.get(0);
    if first != second {
        return Ok(Some("consecutive statements ran on different backends"));
    }
    client.batch_execute(PROBE_LISTEN).await?;
    let listening: bool = client.query_one(PROBE_LISTENING, &[]).await?.get(0);
    client.batch_execute(PROBE_UNLISTEN).await?;
    if !listening {
        return Ok(Some("LISTEN did not persist to the next statement"));
    }
    let keys: [&(dyn ToSql + Sync); 2] = [&LOCK_PROBE_NAMESPACE, &first];
    client.query_one(PROBE_LOCK, &keys).await?;
    let held: i64 = client.query_one(PROBE_LOCK_HELD, &keys).await?.get(0);
    client.query_one(PROBE_UNLOCK, &keys).await?;
    if held != 1 {
        return Ok(Some(
            "a session advisory lock did not persist to the next statement",
        ));
    }
    Ok(None)
}

/// A connection's role, database and server version.
#[derive(Debug, Clone)]
pub struct WhoAndWhere {
    pub role: String,
    pub database: String,
    pub server_version: String,
}

/// The role, database and server version of `client`'s connection, by a
/// simple query (no prepared statement: it may go through a transaction
/// pooler).
pub async fn who_and_where(client: &Client) -> Result<WhoAndWhere, tokio_postgres::Error> {
    let messages = client.simple_query(WHO_AND_WHERE).await?;
    let row = messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let column = |i: usize| {
        row.and_then(|row| row.get(i))
            .unwrap_or("(unknown)")
            .to_owned()
    };
    Ok(WhoAndWhere {
        role: column(0),
        database: column(1),
        server_version: column(2),
    })
}
