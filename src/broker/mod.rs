//! The domain: each step of a job's life has a file of its own. No HTTP types.
//!
//! - [`submit`](Broker::submit), then [`wait`](Broker::get) for its end;
//! - the [`stream`](Broker::open_stream) sends it to the listener;
//! - the listener's [`answer`](Broker::answer), or the submitter's
//!   [`cancel`](Broker::cancel), or the deadline (`reaper`) ends it;
//! - an end in another instance reaches the waiters here through
//!   `ended_elsewhere`, with the periodic `recheck` as the safety net;
//! - `announce`: how a new job reaches the stream, and how an end reaches
//!   the waiters here and the other instances.

mod announce;
mod answer;
mod cancel;
mod channels;
mod ended_elsewhere;
mod holder;
mod readiness;
mod reaper;
mod recheck;
mod sealed;
mod status;
mod stream;
mod submit;
mod wait;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Settings, WakeMode};
use crate::job::Job;
use crate::store::{BatchSizes, QueryPool, Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::wake::{Dispatch, Hub, Notifier, listen};

use announce::DoneNotice;
pub use holder::{Holder, RETRY as HOLDER_RETRY};
pub use sealed::SealGate;
pub use status::{ListenerStatus, Stats};
pub use stream::{JobStream, RETRY as STREAM_RETRY, StreamItem};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("no such job")]
    NotFound,
    #[error("the job is already {}", .0.state.as_str())]
    AlreadyTerminal(Box<Job>),
    #[error("the job was already answered differently")]
    AlreadyAnswered(Box<Job>),
    #[error("the job is {}", .0.state.as_str())]
    Gone(Box<Job>),
    #[error("another listener holds the stream")]
    ListenerBusy,
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("too many requests are waiting on this instance")]
    TooManyWaiting,
    /// The channel holds as many open jobs as its limit allows: refused,
    /// nothing stored.
    #[error("the channel has {0} open jobs, its limit (max_open_jobs)")]
    ChannelFull(i32),
    /// Too many requests queue for the database on this instance: refused,
    /// nothing stored.
    #[error("{0}")]
    Overloaded(String),
    /// The seal gate refused a submit or an answer; nothing was stored.
    #[error("{0}")]
    Sealing(crate::seal::DoorRefusal),
    /// The database refused a value the client sent.
    #[error("{0}")]
    InvalidValue(&'static str),
    /// The database cannot be reached now, or takes no writes now
    /// (`read_only`: a standby, or read-only by setting); worth retrying
    /// shortly. `message` says why, for the log (never the data).
    #[error("{message}")]
    Unavailable { read_only: bool, message: String },
    /// The database refused a statement: a fault of the broker or the schema.
    /// Described by SQLSTATE and the objects named, never by the data.
    #[error("{0}")]
    Database(String),
    /// A state change did not finish (its task panicked).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for BrokerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::ReadOnly => BrokerError::Unavailable {
                read_only: error.is_read_only(),
                message: error.to_string(),
            },
            StoreError::InvalidValue(what) => BrokerError::InvalidValue(what),
            StoreError::Overloaded(_) => BrokerError::Overloaded(error.to_string()),
            StoreError::Query(_)
            | StoreError::Undecodable(_)
            | StoreError::EndedUnreadable { .. } => BrokerError::Database(error.to_string()),
        }
    }
}

/// One instance's broker: the store, the hub and the background pieces.
pub struct Broker {
    store: Arc<Store>,
    hub: Arc<Hub>,
    notifier: Arc<Notifier>,
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    instance: String,
    /// Cancelled when shutdown begins: no new streams, waiters answer, loops stop.
    shutdown: CancellationToken,
    /// State changes in flight, each on a task of its own ([`Broker::settle`]).
    transitions: TaskTracker,
    /// Cancelled once every state change has finished: the notifier then
    /// sends what is left and stops.
    notifier_stop: CancellationToken,
    /// Where the dedicated sessions (stream lock, LISTEN) connect.
    session_config: crate::store::Target,
    /// The seal gate, when `BACKCHANNEL_REQUIRE_SEALED` is on.
    seal_gate: Option<SealGate>,
    /// The stream holder's address, with forwarding on.
    holder: holder::HolderCache,
    /// The named channels this instance knows.
    channels: channels::ChannelMap,
}

impl Broker {
    /// A broker over the query `pool`.
    pub fn new(
        settings: Arc<Settings>,
        pool: QueryPool,
        session_config: crate::store::Target,
        instance: String,
        shutdown: CancellationToken,
        seal_gate: Option<SealGate>,
    ) -> Arc<Broker> {
        let metrics = Metrics::new();
        let sizes = BatchSizes {
            insert: metrics.database.batch("insert"),
            finish: metrics.database.batch("finish"),
            insert_alone: metrics.database.alone("insert"),
            finish_alone: metrics.database.alone("finish"),
        };
        Arc::new(Broker {
            store: Arc::new(Store::new(pool, sizes, settings.max_queued)),
            hub: Hub::new(settings.max_waiting, settings.wake),
            notifier: Notifier::new(),
            settings,
            metrics: Arc::new(metrics),
            instance,
            shutdown,
            transitions: TaskTracker::new(),
            notifier_stop: CancellationToken::new(),
            session_config,
            seal_gate,
            holder: holder::HolderCache::default(),
            channels: channels::ChannelMap::default(),
        })
    }

    /// Start the background loops: outgoing notifications, the reaper and, in
    /// notify mode, the LISTEN session with what it feeds.
    pub fn spawn_loops(
        self: &Arc<Self>,
        listen_config: crate::store::Target,
    ) -> Vec<JoinHandle<()>> {
        let mut loops = vec![
            tokio::spawn(self.notifier.clone().run(
                self.store.clone(),
                self.metrics.clone(),
                self.notifier_stop.clone(),
            )),
            tokio::spawn(reaper::run(self.clone())),
        ];
        if self.settings.forwarding() {
            loops.push(tokio::spawn(holder::run(self.clone())));
        }
        if self.polling().is_none() {
            let (ended_elsewhere, queued) = mpsc::unbounded_channel();
            let dispatch = Dispatch {
                hub: self.hub.clone(),
                metrics: self.metrics.clone(),
                ended_elsewhere,
            };
            let shutdown = self.shutdown.clone();
            loops.push(tokio::spawn(listen::run(listen_config, dispatch, shutdown)));
            loops.push(tokio::spawn(recheck::run(self.clone())));
            loops.push(tokio::spawn(ended_elsewhere::run(self.clone(), queued)));
        }
        loops
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This instance's name in logs and in the stream holder record.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Requests waiting for a job on this instance now.
    pub fn waiting(&self) -> usize {
        self.hub.waiting()
    }

    /// Statements this instance has sent to the database so far.
    pub fn statements(&self) -> u64 {
        self.store.statements()
    }

    /// Run a state change to completion on a task of its own, whatever
    /// becomes of the request that asked for it: once its statement is sent,
    /// what must follow the commit (the local wake, the NOTIFY, metrics, the
    /// log line) happens even if the client hangs up, and the pooled
    /// connection goes back to the pool only when the statement is done.
    /// Shutdown waits for these before the last notifications leave.
    ///
    /// The change is spawned at once: the future returned holds only its
    /// handle, so that a request's own future (kept for as long as it waits)
    /// stays small.
    fn settle<T, F>(&self, change: F) -> impl Future<Output = Result<T, BrokerError>> + use<T, F>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BrokerError>> + Send + 'static,
    {
        let handle = self.transitions.spawn(change);
        async move {
            match handle.await {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(%error, "a state change failed");
                    Err(BrokerError::Internal("a state change failed".into()))
                }
            }
        }
    }

    /// After the last request: wait up to `grace` for the state changes still
    /// in flight, then let the notifier send what is left and stop.
    pub async fn finish(&self, grace: Duration) {
        self.transitions.close();
        if tokio::time::timeout(grace, self.transitions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.transitions.len(),
                "state changes still running at the end of the grace period"
            );
        }
        self.notifier_stop.cancel();
    }

    /// Read one job, expiring it if its deadline passed (and telling everyone).
    pub async fn read(self: &Arc<Self>, id: i64) -> Result<Option<Job>, BrokerError> {
        let broker = self.clone();
        self.settle(async move { broker.read_now(id).await }).await
    }

    /// [`read`](Self::read) inside a state change that is already settling.
    async fn read_now(&self, id: i64) -> Result<Option<Job>, BrokerError> {
        let Some(read) = self.store.read(id).await? else {
            return Ok(None);
        };
        if read.expired_now {
            tracing::info!(job_id = id, "job expired");
            self.announce_end(&read.job, DoneNotice::ByNotifier);
        }
        Ok(Some(read.job))
    }

    /// The poll interval in poll mode (the sleep-polling baseline), else `None`.
    /// With the hub's [`NewJobWake::Polled`](crate::job::NewJobWake::Polled),
    /// the only places the two wake modes differ.
    fn polling(&self) -> Option<Duration> {
        match self.settings.wake {
            WakeMode::Poll => Some(self.settings.poll_interval),
            WakeMode::Notify => None,
        }
    }

    /// In poll mode, one poll interval; in notify mode, never.
    async fn poll_tick(&self) {
        match self.polling() {
            Some(interval) => tokio::time::sleep(interval).await,
            None => std::future::pending().await,
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// A database problem that no retry inside the broker resolved.
fn unsettled(what: &str) -> BrokerError {
    StoreError::Unavailable(format!("{what} did not settle")).into()
}
