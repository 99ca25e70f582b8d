//! The instance's LISTEN connection: one dedicated session (never pooled),
//! driven with `poll_message`, feeding the hub. Reconnects with backoff and
//! jitter; after every (re)connect the waiters are re-checked against the table
//! and the stream re-claims, because notifications sent while it was away are gone.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::backoff::Backoff;
use crate::job::{CHANNEL_DONE, CHANNEL_NEW};
use crate::store::Target;
use crate::store::connect::OwnBackends;
use crate::store::queries::DEDICATED_SESSION_SETUP;
use crate::telemetry::metrics::Metrics;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Run until `shutdown`: keep one LISTEN session up and dispatch what it hears.
///
/// `own`: the instance's own pooled backends. A job one of them ended was
/// handed to its local waiters when the statement returned; its
/// `backchannel_done` needs no reading back here.
pub async fn run(
    target: Target,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    own: Option<OwnBackends>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        let outcome = tokio::select! {
            outcome = listen_once(&target, &hub, &metrics, &own) => outcome,
            _ = shutdown.cancelled() => break,
        };
        // A connection that came up resets the backoff; failing to connect grows it.
        if hub.is_listening() {
            backoff.reset();
        }
        hub.set_listening(false);
        // The session is gone, perhaps with the server: pids heard before
        // may belong to someone else once the server restarts.
        if let Some(own) = &own {
            own.clear();
        }
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

/// One connection's life: connect, LISTEN, dispatch until it dies.
async fn listen_once(
    target: &Target,
    hub: &Arc<Hub>,
    metrics: &Arc<Metrics>,
    own: &Option<OwnBackends>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = target.connect().await?;
    let (dead_tx, mut dead_rx) = tokio::sync::oneshot::channel();
    let dispatch_hub = hub.clone();
    let dispatch_metrics = metrics.clone();
    let own = own.clone();
    let driver = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let ours = own.as_ref().is_some_and(|o| o.contains(n.process_id()));
                    dispatch(
                        &dispatch_hub,
                        &dispatch_metrics,
                        n.channel(),
                        n.payload(),
                        ours,
                    )
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = dead_tx.send(Some(error));
                    return;
                }
            }
        }
        let _ = dead_tx.send(None);
    });
    let _abort = AbortOnDrop(driver);
    client
        .batch_execute(&format!(
            "LISTEN {CHANNEL_NEW}; LISTEN {CHANNEL_DONE}; {DEDICATED_SESSION_SETUP};"
        ))
        .await?;
    hub.set_listening(true);
    tracing::info!("LISTEN connection up");
    hub.listen_restored();
    match (&mut dead_rx).await {
        Ok(Some(error)) => Err(error),
        _ => Ok(()),
    }
}

/// `ours`: sent by one of this instance's pooled backends.
fn dispatch(hub: &Hub, metrics: &Metrics, channel: &str, payload: &str, ours: bool) {
    match channel {
        CHANNEL_DONE => match payload.parse::<i64>() {
            Ok(_) if ours => metrics.wake.received(CHANNEL_DONE),
            Ok(id) => {
                metrics.wake.received(CHANNEL_DONE);
                hub.ended_elsewhere(id)
            }
            Err(_) => tracing::debug!(
                payload_len = payload.len(),
                "ignored malformed done notification"
            ),
        },
        CHANNEL_NEW => {
            metrics.wake.received(CHANNEL_NEW);
            hub.wake_stream()
        }
        _ => {}
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
