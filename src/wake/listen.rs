//! Keeping the instance's LISTEN session up ([`ListenSession`], in the
//! store) and dispatching what it hears. Reconnects with backoff and jitter;
//! after every (re)connect the waiters are re-checked against the table and
//! the stream re-claims, because notifications sent while it was away are gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::backoff::Backoff;
use crate::job::{CHANNEL_DONE, CHANNEL_HOLDER, CHANNEL_NEW, ChannelId};
use crate::store::{Heard, ListenSession, Target};
use crate::telemetry::metrics::Metrics;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where what the LISTEN session hears goes.
#[derive(Clone)]
pub struct Dispatch {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// Jobs another instance ended that have waiters here, queued for the
    /// broker, which reads them back in batches and hands each to its waiters.
    pub ended_elsewhere: mpsc::UnboundedSender<i64>,
}

/// Run until `shutdown`: keep one LISTEN session up and dispatch what it hears.
pub async fn run(target: Target, dispatch: Dispatch, shutdown: CancellationToken) {
    let hub = dispatch.hub.clone();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let outcome = tokio::select! {
            outcome = listen_once(&target, &dispatch) => outcome,
            _ = shutdown.cancelled() => break,
        };
        // A connection that came up resets the backoff; failing to connect grows it.
        if hub.is_listening() {
            backoff.reset();
        }
        hub.set_listening(false);
        match outcome {
            Ok(()) => tracing::warn!("LISTEN connection closed; reconnecting"),
            Err(error) => tracing::warn!(
                error = %target.explain(&error),
                "LISTEN connection failed; reconnecting"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    hub.set_listening(false);
}

/// One session's life: connect and LISTEN (dispatching from then on), then
/// wait until it dies.
async fn listen_once(target: &Target, dispatch: &Dispatch) -> Result<(), tokio_postgres::Error> {
    let heard = dispatch.clone();
    let session =
        ListenSession::open(target, move |notification| heard.heard(notification)).await?;
    dispatch.hub.set_listening(true);
    tracing::info!("LISTEN connection up");
    dispatch.hub.listen_restored();
    session.ended().await
}

impl Dispatch {
    /// One notification: a job ended (have its waiters here handed its end,
    /// unless they hold it already), or a new job may be waiting (wake the
    /// stream). Whoever sent it: this instance's own commits are heard too,
    /// and a sending backend's pid says nothing about which instance it
    /// serves (behind a pooler, or once a pid is reused).
    fn heard(&self, heard: Heard<'_>) {
        match heard.channel {
            CHANNEL_DONE => match heard.payload.parse::<i64>() {
                Ok(id) => {
                    self.metrics.wake.received(CHANNEL_DONE);
                    if self.hub.heard_ended(id) {
                        // The receiver is gone only while the instance stops.
                        let _ = self.ended_elsewhere.send(id);
                    }
                }
                Err(_) => tracing::debug!(
                    payload_len = heard.payload.len(),
                    "ignored malformed done notification"
                ),
            },
            CHANNEL_NEW => {
                self.metrics.wake.received(CHANNEL_NEW);
                // The payload is the new job's channel; an instance of an
                // earlier release sends none: every stream here looks.
                match heard.payload.parse::<ChannelId>() {
                    Ok(channel) => {
                        let _ = self.hub.wake_stream(channel);
                    }
                    Err(_) => self.hub.wake_streams(),
                }
            }
            CHANNEL_HOLDER => {
                self.metrics.wake.received(CHANNEL_HOLDER);
                self.hub.holder_moved();
            }
            _ => {}
        }
    }
}
