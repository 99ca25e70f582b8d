//! The instance's LISTEN session: a connection of its own (never pooled: a
//! pooled connection is driven only while awaited, which drops
//! notifications, and its recycling runs `UNLISTEN *`), driven with
//! `poll_message`, listening on both channels. What it hears is handed on as
//! it arrives; what to do with it, and reconnecting, is [`crate::wake::listen`]'s.

use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

use super::Target;
use super::sql::notifications::LISTEN;
use super::sql::session::DEDICATED_SESSION_SETUP;

/// One notification: its channel and its payload. (Not the sending
/// backend's pid: behind a pooler, or once reused, it names no instance.)
#[derive(Debug, Clone, Copy)]
pub struct Heard<'a> {
    pub channel: &'a str,
    pub payload: &'a str,
}

/// A LISTEN session that is up.
pub struct ListenSession {
    /// Kept for as long as the session lives: dropping it closes the connection.
    _client: Client,
    ended: oneshot::Receiver<Option<tokio_postgres::Error>>,
    _driver: AbortOnDrop,
}

impl ListenSession {
    /// Connect, give the session the settings of every dedicated session, and
    /// LISTEN on `backchannel_new` and `backchannel_done`. From the moment it
    /// connects, every notification is handed to `heard`, on the task that
    /// drives the connection.
    pub async fn open(
        target: &Target,
        heard: impl Fn(Heard<'_>) + Send + 'static,
    ) -> Result<ListenSession, tokio_postgres::Error> {
        let (client, mut connection) = target.connect().await?;
        let (dead_tx, ended) = oneshot::channel();
        let driver = tokio::spawn(async move {
            let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => heard(Heard {
                        channel: n.channel(),
                        payload: n.payload(),
                    }),
                    Ok(_) => {}
                    Err(error) => {
                        let _ = dead_tx.send(Some(error));
                        return;
                    }
                }
            }
            let _ = dead_tx.send(None);
        });
        let driver = AbortOnDrop(driver);
        client
            .batch_execute(&format!("{LISTEN}; {DEDICATED_SESSION_SETUP};"))
            .await?;
        Ok(ListenSession {
            _client: client,
            ended,
            _driver: driver,
        })
    }

    /// Resolves when the session is gone: with the error that ended it, or
    /// `Ok` when it closed.
    pub async fn ended(self) -> Result<(), tokio_postgres::Error> {
        match self.ended.await {
            Ok(Some(error)) => Err(error),
            _ => Ok(()),
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
