//! What the agent is doing, for whoever watches it: a [`Status`] for tests
//! and embedding programs, and the same events as Prometheus metrics for the
//! health listener. Every part of the agent reports through one [`Reporter`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::{AgentMetrics, CodeLabel, OutcomeLabel, ReasonLabel, ResultLabel};

/// Counters since the agent started, and whether a stream is open now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// A stream is open.
    pub connected: bool,
    /// Streams opened so far.
    pub connections: u64,
    /// Open streams that ended (the broker closed it, it fell silent, ...).
    pub disconnects: u64,
    /// `409 listener_busy` answers: another listener held the stream.
    pub busy: u64,
    /// Job events ignored because the same job was already being handled here.
    pub repeats: u64,
    /// Jobs started (forwarded or echoed).
    pub started: u64,
    /// Jobs whose answer the broker accepted.
    pub answered: u64,
    /// Jobs finished in any way (answered, refused, expired, abandoned).
    pub finished: u64,
    /// Answers posted again after a network error or a 5xx.
    pub answer_retries: u64,
    /// Sealed jobs checked and opened.
    pub opened: u64,
    /// Jobs refused by the sealing checks (the handler was not called).
    pub refused: u64,
    /// Reloads of the sealing keys: applied, and refused (old keys kept).
    pub key_reloads: u64,
    pub key_reloads_refused: u64,
    /// Tries to reach the handler that found no one (refused or reset).
    pub handler_unreachable: u64,
    /// Forwards tried again after the handler could not be reached.
    pub handler_retries: u64,
}

/// The sending side, shared by the agent's parts.
#[derive(Debug, Clone)]
pub struct Reporter {
    status: watch::Sender<Status>,
    metrics: Arc<AgentMetrics>,
    /// Since when every try to reach the handler found no one (none while it
    /// answers): /readyz reports a handler down for too long.
    handler_failing_since: Arc<Mutex<Option<Instant>>>,
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            status: watch::Sender::new(Status::default()),
            metrics: Arc::new(AgentMetrics::new()),
            handler_failing_since: Arc::new(Mutex::new(None)),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        self.status.send_modify(change);
    }

    /// A stream is open.
    pub fn connected(&self) {
        self.update(|s| {
            s.connected = true;
            s.connections += 1;
        });
        self.metrics.stream.up.set(1);
        self.metrics.stream.connects.inc();
    }

    /// The open stream ended, for `reason`; nothing if none was open.
    pub fn disconnected(&self, reason: &'static str) {
        let mut was_open = false;
        self.update(|s| {
            was_open = s.connected;
            if s.connected {
                s.connected = false;
                s.disconnects += 1;
            }
        });
        if was_open {
            self.metrics.stream.up.set(0);
            self.metrics
                .stream
                .disconnects
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
    }

    /// An attempt opened no stream, for `reason`.
    pub fn failed(&self, reason: &'static str) {
        if reason == "busy" {
            self.update(|s| s.busy += 1);
        }
        self.metrics
            .stream
            .failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn repeat(&self) {
        self.update(|s| s.repeats += 1);
        self.metrics.jobs.repeats.inc();
    }

    pub fn job_started(&self) {
        self.update(|s| s.started += 1);
        self.metrics.jobs.in_flight.inc();
    }

    /// The handler (or the echo) answered after `took`.
    pub fn handled(&self, took: Duration) {
        self.metrics
            .jobs
            .handler_seconds
            .observe(took.as_secs_f64());
    }

    /// The handler answered (any HTTP status): it is there.
    pub fn handler_answered(&self) {
        *self.failing_since() = None;
    }

    /// A try to reach the handler found no one (refused or reset).
    pub fn handler_unreachable(&self) {
        self.failing_since().get_or_insert_with(Instant::now);
        self.update(|s| s.handler_unreachable += 1);
        self.metrics.handler.unreachable.inc();
    }

    /// A forward is tried again after the handler could not be reached.
    pub fn handler_retry(&self) {
        self.update(|s| s.handler_retries += 1);
        self.metrics.handler.retries.inc();
    }

    /// The handler failed a job, for `reason` (metrics::HANDLER_FAILURES).
    pub fn handler_failed(&self, reason: &'static str) {
        self.metrics
            .handler
            .failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The last try to reach the handler found no one.
    pub fn handler_failing(&self) -> bool {
        self.failing_since().is_some()
    }

    /// Every try to reach the handler for at least `after` found no one.
    pub fn handler_down(&self, after: Duration) -> bool {
        self.failing_since()
            .is_some_and(|since| since.elapsed() >= after)
    }

    fn failing_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A poisoned lock still holds a valid Option.
        self.handler_failing_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn answer_retry(&self) {
        self.update(|s| s.answer_retries += 1);
        self.metrics.jobs.answer_retries.inc();
    }

    /// A sealed job was checked and opened.
    pub fn sealed_opened(&self) {
        self.update(|s| s.opened += 1);
        self.metrics.sealed.opened.inc();
    }

    /// A job was refused by the sealing checks with `code`.
    pub fn sealed_refused(&self, code: &'static str) {
        self.update(|s| s.refused += 1);
        self.metrics
            .sealed
            .refused
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    pub fn replay_entries(&self, entries: usize) {
        self.metrics
            .sealed
            .replay_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The sealing keys were read again: `applied`, or refused (kept).
    pub fn key_reload(&self, applied: bool) {
        self.update(|s| {
            if applied {
                s.key_reloads += 1;
            } else {
                s.key_reloads_refused += 1;
            }
        });
        let result = if applied { "applied" } else { "refused" };
        self.metrics
            .sealed
            .key_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A job ended with `outcome`; `answered`: the broker took its answer.
    pub fn job_finished(&self, outcome: &'static str, answered: bool) {
        self.update(|s| {
            s.finished += 1;
            if answered {
                s.answered += 1;
            }
        });
        self.metrics.jobs.in_flight.dec();
        self.metrics
            .jobs
            .outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

impl Default for Reporter {
    fn default() -> Reporter {
        Reporter::new()
    }
}
