//! The listener's stream, its policy: one in the cluster (the lock lives in
//! [`StreamSession`]), a takeover by the same listener id, the backlog then
//! new jobs, keepalives, and an end as soon as the client or the lock is gone.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, Stream};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Broker, BrokerError, DoneNotice};
use crate::job::{ChannelId, JobEvent};
use crate::json;
use crate::store::{Claimed, StoreError, StreamSession};
use crate::telemetry::metrics::{Metrics, SiteLabel};
use crate::wake::StreamWaker;

/// Jobs claimed per statement.
const CLAIM_BATCH: i64 = 32;
/// Events buffered between the claimer and the socket. Small: a slow listener
/// stops the claiming instead of growing memory.
const BUFFER: usize = 16;
/// A claim slower than this means the lock session is unusable (e.g. a silent
/// network cut): the stream ends instead of hanging.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);
/// The reconnection delay the stream asks of its client (`retry:`).
pub const RETRY: Duration = Duration::from_secs(2);

/// What the stream sends, in order.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Retry(Duration),
    /// A job: its id and the event's `data`, one line of JSON.
    Job {
        id: i64,
        data: String,
    },
    Keepalive,
}

/// The events of one open stream. Dropping it (the client went away) ends the
/// stream at once: the claimer stops and the lock session closes. Once the
/// stream has ended on the broker's side (the lock is lost, shutdown), events
/// still buffered are not handed out: a stream never sends without the lock.
pub struct JobStream {
    rx: mpsc::Receiver<StreamItem>,
    ended: CancellationToken,
    _stop: DropGuard,
}

impl Stream for JobStream {
    type Item = StreamItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StreamItem>> {
        if self.ended.is_cancelled() {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx)
    }
}

/// `stream_connected` counts the streams of this instance, and
/// `channel_stream_connected{channel}` is 1 exactly while its channel's
/// stream lives here.
struct ConnectedGauge(Arc<Metrics>, SiteLabel);

impl ConnectedGauge {
    fn new(metrics: Arc<Metrics>, channel: String) -> ConnectedGauge {
        let label = SiteLabel { channel };
        metrics.stream.connected.inc();
        metrics.stream.by_channel.get_or_create(&label).inc();
        ConnectedGauge(metrics, label)
    }
}

impl Drop for ConnectedGauge {
    fn drop(&mut self) {
        self.0.stream.connected.dec();
        self.0.stream.by_channel.get_or_create(&self.1).dec();
    }
}

impl Broker {
    /// Open `channel`'s stream for a listener, or refuse with `ListenerBusy`.
    /// A listener id equal to the current holder's takes the stream over
    /// (that channel's only: each stream has a session of its own).
    pub async fn open_stream(
        self: &Arc<Self>,
        channel: ChannelId,
        listener_id: Option<String>,
    ) -> Result<JobStream, BrokerError> {
        if self.shutdown.is_cancelled() {
            return Err(BrokerError::ShuttingDown);
        }
        // Cheap refusal through the pool first, so a listener retrying in a
        // loop does not make the database fork a backend per attempt.
        let mut takeover = None;
        if let Some(holder) = self.store.holder(channel).await? {
            match (&listener_id, &holder.listener_id) {
                (Some(ours), Some(theirs)) if ours == theirs => takeover = Some(holder.pid),
                _ => return Err(self.busy()),
            }
        }
        let session = StreamSession::open(
            &self.session_config,
            channel,
            self.settings.synchronous_commit.as_deref(),
            self.store.counter(),
            takeover,
            listener_id.as_deref(),
            (&self.instance, self.advertise_url()),
        )
        .await?;
        let Some(session) = session else {
            return Err(self.busy());
        };
        if takeover.is_some() {
            self.metrics.stream.takeovers.inc();
        }
        self.metrics.stream.connects.inc();
        let waker = self.hub.attach_stream(channel, session.id());
        let connected = ConnectedGauge::new(self.metrics.clone(), self.channel_name(channel));
        tracing::info!(
            stream_id = session.id(),
            channel,
            listener_id = listener_id.as_deref().unwrap_or(""),
            "stream opened"
        );

        let (tx, rx) = mpsc::channel(BUFFER);
        let stop = self.shutdown.child_token();
        let ended = CancellationToken::new();
        let broker = self.clone();
        let run = broker.run_stream(channel, session, (waker, connected), tx, stop.clone());
        let on_end = ended.clone();
        tokio::spawn(async move {
            run.await;
            on_end.cancel();
        });
        Ok(JobStream {
            rx,
            ended,
            _stop: stop.drop_guard(),
        })
    }

    async fn run_stream(
        self: Arc<Self>,
        channel: ChannelId,
        session: StreamSession,
        (waker, connected): (StreamWaker, ConnectedGauge),
        tx: mpsc::Sender<StreamItem>,
        stop: CancellationToken,
    ) {
        let stream_id = session.id();
        let reason = {
            tokio::select! {
                outcome = self.pump(&session, &waker, &tx) => match outcome {
                    Ok(()) => "client went away".to_string(),
                    Err(error) => format!("database error: {error}"),
                },
                _ = session.lost() => "lock session lost".to_string(),
                _ = stop.cancelled() => if self.shutdown.is_cancelled() {
                    "shutting down".to_string()
                } else {
                    "client went away".to_string()
                },
                _ = tx.closed() => "client went away".to_string(),
            }
        };
        let handed = waker.handed_any();
        drop(waker);
        drop(connected);
        session.close().await;
        // Jobs their inserts claimed for this stream may be unsent (handed
        // while it ended, or its lock taken over before it noticed): the
        // next stream, here or on another instance, is woken to claim them
        // (a new stream's own first claim may have run before they were
        // stored). Once the lock is released, so the claim can see them.
        if handed {
            self.notifier.new_job(channel);
        }
        tracing::info!(stream_id, channel, %reason, "stream closed");
    }

    fn busy(&self) -> BrokerError {
        self.metrics.stream.conflicts.inc();
        BrokerError::ListenerBusy
    }

    /// Send the backlog, then new jobs as they come, with keepalives; returns
    /// when the client is gone (or stopped reading), or an error when the
    /// session fails.
    async fn pump(
        self: &Arc<Self>,
        session: &StreamSession,
        waker: &StreamWaker,
        tx: &mpsc::Sender<StreamItem>,
    ) -> Result<(), StoreError> {
        let period = self.settings.heartbeat;
        // A listener that reads nothing for two heartbeats is gone (or hangs);
        // the kernel's own bound on unacknowledged data is set on the socket.
        let patience = period * 2;
        macro_rules! send {
            ($item:expr) => {
                match tokio::time::timeout(patience, tx.send($item)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Ok(()),
                    Err(_) => {
                        tracing::info!("the listener stopped reading; ending the stream");
                        return Ok(());
                    }
                }
            };
        }
        send!(StreamItem::Retry(RETRY));
        let claims = self.metrics.database.batch("claim");
        let mut heartbeat = interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Claim at the start, after a wake that asks for it (jobs stored
        // pending), on every heartbeat (a cheap liveness check of the lock
        // session and a guard against any wake-up lost on the way) and on
        // every poll; a wake that only hands over jobs their inserts claimed
        // for this stream runs no statement.
        let mut claim = true;
        loop {
            // Drain: claim batches until a short one says nothing is left.
            while claim {
                let claimed = session.claim(CLAIM_BATCH);
                let batch = tokio::time::timeout(CLAIM_TIMEOUT, claimed)
                    .await
                    .map_err(|_| StoreError::Unavailable("claiming jobs timed out".into()))??;
                claim = batch.len() as i64 == CLAIM_BATCH;
                claims.observe(batch.len() as f64);
                for claimed in batch {
                    if let Some(item) = self.deliverable(claimed).await {
                        send!(item);
                    }
                }
                if heartbeat.tick().now_or_never().is_some() {
                    send!(StreamItem::Keepalive);
                }
            }
            // Jobs their inserts claimed for this stream, in the order stored.
            for event in waker.take_handed() {
                if let Some(item) = self.deliverable(Claimed::Job(event)).await {
                    send!(item);
                }
            }
            tokio::select! {
                _ = waker.woken() => claim = waker.take_claim(),
                _ = heartbeat.tick() => {
                    send!(StreamItem::Keepalive);
                    claim = true;
                }
                _ = self.poll_tick() => claim = true,
            }
        }
    }

    /// The event for a claimed job, if a listener can take it: a row that
    /// cannot be read, or whose payload no listener could parse (another
    /// application wrote it through SQL), ends that job `failed` with the code
    /// `undeliverable`, and the stream goes on with the others.
    async fn deliverable(self: &Arc<Self>, claimed: Claimed) -> Option<StreamItem> {
        let limit = self.settings.max_body;
        let problem = match claimed {
            Claimed::Unreadable(id, problem) => (id, problem),
            Claimed::Job(event) => match json::check_stored(event.payload.get(), limit) {
                Err(refusal) => (
                    event.id,
                    format!("the payload cannot be sent: {}", refusal.describe(limit)),
                ),
                Ok(()) => match serde_json::to_string(&event) {
                    Ok(data) => return Some(self.sent(&event, data)),
                    Err(error) => (event.id, format!("the job cannot be written: {error}")),
                },
            },
        };
        self.undeliverable(problem.0, &problem.1).await;
        None
    }

    fn sent(&self, event: &JobEvent, data: String) -> StreamItem {
        tracing::debug!(job_id = event.id, attempt = event.attempt, "job sent");
        StreamItem::Job { id: event.id, data }
    }

    /// End job `id` as `failed`/`undeliverable` and announce it like any end
    /// (a state change: it completes even if the stream ends meanwhile).
    async fn undeliverable(self: &Arc<Self>, id: i64, message: &str) {
        tracing::warn!(job_id = id, %message, "job undeliverable");
        let error = json!({"code": "undeliverable", "message": message});
        let broker = self.clone();
        let ended = self
            .settle(async move { Ok(broker.store.fail_undeliverable(id, &error).await?) })
            .await;
        match ended {
            Ok(Some(job)) => {
                self.metrics.jobs.undeliverable.inc();
                self.announce_end(&job, DoneNotice::ByNotifier)
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(job_id = id, %error, "could not end an undeliverable job; the next stream tries again")
            }
        }
    }
}
