//! The stream's own session: a connection outside the pool that lives exactly
//! as long as the stream. It holds the cluster's one stream lock (a session
//! advisory lock), the holder record that describes it, and the claim.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Row, Statement};

use super::connect::session_setup;
use super::rows::event_from_row;
use super::sql::session::DEDICATED_SESSION_SETUP;
use super::sql::stream::{
    CLAIM_JOBS, HOLDER_MOVED, NO_STATEMENT_TIMEOUT, REGISTER_HOLDER, RELEASE_HOLDER,
    STREAM_SESSION_SETUP, TERMINATE_BACKEND, TRY_STREAM_LOCK, WAIT_STREAM_LOCK, takeover_timeout,
};
use super::sql::stream_lock;
use super::{Counter, Session, StoreError, Target};
use crate::job::{ChannelId, JobEvent};

/// How long a takeover waits for the stale holder's lock to be released.
const TAKEOVER_WAIT: Duration = Duration::from_secs(3);
/// How long closing may spend removing the holder record.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a claim took: a job to send, or a row that cannot be read (its id and
/// what is wrong).
pub enum Claimed {
    Job(JobEvent),
    Unreadable(i64, String),
}

/// A session holding the stream lock, with its claim prepared.
pub struct StreamSession {
    session: Session,
    claim: Statement,
    stream_id: i64,
    channel: ChannelId,
    statements: Counter,
}

impl StreamSession {
    /// Connect a session of its own (with `synchronous_commit` if set) and
    /// take `channel`'s stream lock. When the lock is held by `takeover` (a backend
    /// pid: the same listener's stale stream), end that backend's session and
    /// wait for its lock. `None`: busy.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        target: &Target,
        channel: ChannelId,
        synchronous: Option<&str>,
        statements: Counter,
        takeover: Option<i32>,
        listener_id: Option<&str>,
        (instance, advertise_url): (&str, Option<&str>),
    ) -> Result<Option<StreamSession>, StoreError> {
        let session = Session::connect(target).await?;
        if let Some(setup) = session_setup(synchronous) {
            statements.add();
            session.client.batch_execute(&setup).await?;
        }
        statements.add();
        session
            .client
            .batch_execute(&format!(
                "{DEDICATED_SESSION_SETUP}; {STREAM_SESSION_SETUP}"
            ))
            .await?;
        statements.add();
        let (space, key) = stream_lock(channel);
        let mut locked: bool = session
            .client
            .query_one(TRY_STREAM_LOCK, &[&space, &key])
            .await?
            .get(0);
        if let (false, Some(pid)) = (locked, takeover) {
            tracing::info!(
                pid,
                "taking the stream over from the same listener's stale session"
            );
            statements.add();
            session.client.query_one(TERMINATE_BACKEND, &[&pid]).await?;
            locked = wait_lock(&session, &statements, (space, key)).await?;
        }
        if !locked {
            return Ok(None);
        }
        statements.add();
        let row: Row = session
            .client
            .query_one(
                REGISTER_HOLDER,
                &[&listener_id, &instance, &advertise_url, &channel],
            )
            .await?;
        let stream_id = super::rows::column(&row, 0)?;
        statements.add();
        if let Err(error) = session.client.execute(HOLDER_MOVED, &[&channel]).await {
            tracing::debug!(%error, "could not announce the new stream holder");
        }
        statements.add();
        let claim = session.client.prepare(CLAIM_JOBS).await?;
        Ok(Some(StreamSession {
            session,
            claim,
            stream_id,
            channel,
            statements,
        }))
    }

    /// This stream's number: a job is sent at most once per stream.
    pub fn id(&self) -> i64 {
        self.stream_id
    }

    /// Claim up to `limit` jobs not yet sent on this stream, oldest first.
    pub async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, StoreError> {
        self.statements.add();
        let rows = self
            .session
            .client
            .query(&self.claim, &[&self.stream_id, &limit, &self.channel])
            .await?;
        let mut claimed: Vec<(i64, Claimed)> = rows
            .iter()
            .filter_map(|row| {
                let id: i64 = row.try_get(0).ok()?;
                Some(match event_from_row(row) {
                    Ok(event) => (id, Claimed::Job(event)),
                    Err(error) => (id, Claimed::Unreadable(id, error.to_string())),
                })
            })
            .collect();
        claimed.sort_by_key(|(id, _)| *id);
        Ok(claimed.into_iter().map(|(_, c)| c).collect())
    }

    /// Resolves when the session is gone (and with it the lock).
    pub async fn lost(&self) {
        self.session.closed().await
    }

    /// Remove the holder record (bounded) and close the session, which
    /// releases the lock.
    pub async fn close(self) {
        if !self.session.client.is_closed() {
            self.statements.add();
            self.statements.add();
            let client = &self.session.client;
            let release = async {
                client.execute(RELEASE_HOLDER, &[]).await?;
                client.execute(HOLDER_MOVED, &[&self.channel]).await
            };
            let _ = tokio::time::timeout(RELEASE_TIMEOUT, release).await;
        }
    }
}

/// Wait up to [`TAKEOVER_WAIT`] for the stream lock (`space`, `key`) on `session`.
async fn wait_lock(
    session: &Session,
    statements: &Counter,
    (space, key): (i32, i32),
) -> Result<bool, StoreError> {
    let client = &session.client;
    statements.add();
    client
        .batch_execute(&takeover_timeout(TAKEOVER_WAIT))
        .await?;
    statements.add();
    let outcome = client.query_one(WAIT_STREAM_LOCK, &[&space, &key]).await;
    statements.add();
    client.batch_execute(NO_STATEMENT_TIMEOUT).await?;
    match outcome {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
