//! Keeping the instance's LISTEN session up ([`ListenSession`], in the
//! store) and dispatching what it hears into the hub. Reconnects with backoff
//! and jitter; after every (re)connect the waiters are re-checked against the
//! table and the stream re-claims, because notifications sent while it was
//! away are gone.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::backoff::Backoff;
use crate::job::{CHANNEL_DONE, CHANNEL_NEW};
use crate::store::connect::OwnBackends;
use crate::store::{ListenSession, Target};
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

/// One session's life: connect and LISTEN (dispatching from then on), then
/// wait until it dies.
async fn listen_once(
    target: &Target,
    hub: &Arc<Hub>,
    metrics: &Arc<Metrics>,
    own: &Option<OwnBackends>,
) -> Result<(), tokio_postgres::Error> {
    let (dispatch_hub, dispatch_metrics, own) = (hub.clone(), metrics.clone(), own.clone());
    let session = ListenSession::open(target, move |heard| {
        let ours = own.as_ref().is_some_and(|o| o.contains(heard.sender));
        dispatch(
            &dispatch_hub,
            &dispatch_metrics,
            heard.channel,
            heard.payload,
            ours,
        )
    })
    .await?;
    hub.set_listening(true);
    tracing::info!("LISTEN connection up");
    hub.listen_restored();
    session.ended().await
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
