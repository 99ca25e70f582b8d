//! Prometheus metrics of one instance, served at `GET /metrics`.
//! Counters count what this instance did; summed over instances they give the
//! cluster. Gauges that describe shared state are read at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::job::{Job, JobState};
use crate::store::queries::{CHANNEL_DONE, CHANNEL_NEW};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: &'static str,
}

/// A request by method, route template (never the raw path) and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

/// Why a request was refused: the error code of its answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// What a group-commit transaction did: `insert`, `finish` (answers and
/// cancels) or `claim` (the stream).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabel {
    pub kind: &'static str,
}

/// Jobs per transaction: fine steps where batches usually are.
fn batch_buckets() -> Histogram {
    Histogram::new([
        0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0,
        256.0, 384.0, 512.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    pub jobs_submitted: Counter,
    pub jobs_finished: Family<OutcomeLabel, Counter>,
    pub jobs_undeliverable: Counter,
    pub round_trip_seconds: Histogram,
    pub requests_waiting: Gauge,
    pub stream_connected: Gauge,
    pub stream_connects: Counter,
    pub stream_takeovers: Counter,
    pub stream_conflicts: Counter,
    pub notifications_received: Family<ChannelLabel, Counter>,
    pub notifications_sent: Counter,
    pub listen_connected: Gauge,
    pub reaper_expired: Counter,
    pub reaper_deleted: Counter,
    pub pool_size: Gauge,
    pub pool_in_use: Gauge,
    pub pool_waiting: Gauge,
    pub notification_queue_usage: Gauge<f64, AtomicU64>,
    pub oldest_pending_age_seconds: Gauge<f64, AtomicU64>,
    pub ready: Gauge,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_refused: Family<ReasonLabel, Counter>,
    pub token_reloads: Family<ResultLabel, Counter>,
    pub batch_jobs: Family<BatchLabel, Histogram, fn() -> Histogram>,
    pub batch_queued: Family<BatchLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            jobs_submitted: Counter::default(),
            jobs_finished: Family::default(),
            jobs_undeliverable: Counter::default(),
            // 0.5 ms .. ~65 s
            round_trip_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            requests_waiting: Gauge::default(),
            stream_connected: Gauge::default(),
            stream_connects: Counter::default(),
            stream_takeovers: Counter::default(),
            stream_conflicts: Counter::default(),
            notifications_received: Family::default(),
            notifications_sent: Counter::default(),
            listen_connected: Gauge::default(),
            reaper_expired: Counter::default(),
            reaper_deleted: Counter::default(),
            pool_size: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_waiting: Gauge::default(),
            notification_queue_usage: Gauge::default(),
            oldest_pending_age_seconds: Gauge::default(),
            ready: Gauge::default(),
            http_requests: Family::default(),
            http_refused: Family::default(),
            token_reloads: Family::default(),
            batch_jobs: Family::new_with_constructor(batch_buckets),
            batch_queued: Family::default(),
            registry: Registry::default(),
        };
        // Series of the known label values exist from the start, at 0, so that
        // rate() and the alerts see them before the first event.
        for state in [
            JobState::Done,
            JobState::Failed,
            JobState::Expired,
            JobState::Cancelled,
        ] {
            let _ = m.jobs_finished.get_or_create(&OutcomeLabel {
                outcome: state.as_str(),
            });
        }
        for kind in ["insert", "finish", "claim"] {
            let _ = m.batch_jobs.get_or_create(&BatchLabel { kind });
        }
        for channel in [CHANNEL_NEW, CHANNEL_DONE] {
            let _ = m
                .notifications_received
                .get_or_create(&ChannelLabel { channel });
        }
        registry.register_collector(Box::new(crate::process::ProcessCollector));
        let r = registry.sub_registry_with_prefix("backchannel");
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "Always 1; the version label names the running build",
            build_info,
        );
        r.register(
            "http_requests",
            "Requests answered, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_refused",
            "Requests refused with a 4xx, by the error code of the answer",
            m.http_refused.clone(),
        );
        r.register(
            "token_reloads",
            "Token files re-read on SIGHUP, by result (applied or refused)",
            m.token_reloads.clone(),
        );
        r.register(
            "batch_queued",
            "Requests waiting for the next group-commit transaction, by kind (insert, finish)",
            m.batch_queued.clone(),
        );
        r.register(
            "batch_jobs",
            "Jobs per group-commit transaction: inserted, ended (answers and cancels), claimed by the stream",
            m.batch_jobs.clone(),
        );
        r.register(
            "oldest_pending_age_seconds",
            "Age of the oldest pending job in the cluster (0 when none; one query per scrape)",
            m.oldest_pending_age_seconds.clone(),
        );
        r.register(
            "ready",
            "1 when this instance is ready (the database answers and LISTEN is up), as /readyz",
            m.ready.clone(),
        );
        r.register(
            "jobs_submitted",
            "Jobs created through this instance",
            m.jobs_submitted.clone(),
        );
        r.register(
            "jobs_finished",
            "Jobs this instance moved to a terminal state, by outcome",
            m.jobs_finished.clone(),
        );
        r.register(
            "jobs_undeliverable",
            "Jobs the stream could not send (rows written through SQL that no listener could read), ended failed",
            m.jobs_undeliverable.clone(),
        );
        r.register(
            "round_trip_seconds",
            "Time from submit to terminal state of the jobs this instance finished",
            m.round_trip_seconds.clone(),
        );
        r.register(
            "requests_waiting",
            "Requests waiting for a job now",
            m.requests_waiting.clone(),
        );
        r.register(
            "stream_connected",
            "1 while this instance holds the listener stream",
            m.stream_connected.clone(),
        );
        r.register(
            "stream_connects",
            "Streams opened on this instance",
            m.stream_connects.clone(),
        );
        r.register(
            "stream_takeovers",
            "Streams opened by taking over the same listener's stale stream",
            m.stream_takeovers.clone(),
        );
        r.register(
            "stream_conflicts",
            "Stream requests refused with 409 listener_busy",
            m.stream_conflicts.clone(),
        );
        r.register(
            "notifications_received",
            "Notifications received on the LISTEN connection, by channel",
            m.notifications_received.clone(),
        );
        r.register(
            "notifications_sent",
            "Notifications this instance sent",
            m.notifications_sent.clone(),
        );
        r.register(
            "listen_connected",
            "1 while the LISTEN connection is up",
            m.listen_connected.clone(),
        );
        r.register(
            "reaper_expired",
            "Jobs expired by this instance's reaper",
            m.reaper_expired.clone(),
        );
        r.register(
            "reaper_deleted",
            "Old terminal jobs deleted by this instance's reaper",
            m.reaper_deleted.clone(),
        );
        r.register(
            "db_pool_size",
            "Open connections in the query pool",
            m.pool_size.clone(),
        );
        r.register(
            "db_pool_in_use",
            "Pool connections in use",
            m.pool_in_use.clone(),
        );
        r.register(
            "db_pool_waiting",
            "Requests waiting for a pool connection",
            m.pool_waiting.clone(),
        );
        r.register(
            "pg_notification_queue_usage",
            "PostgreSQL's pg_notification_queue_usage() (0..1)",
            m.notification_queue_usage.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The histogram of jobs per `kind` of group-commit transaction.
    pub fn batch(&self, kind: &'static str) -> Histogram {
        self.batch_jobs.get_or_create(&BatchLabel { kind }).clone()
    }

    /// A job reached a terminal state in this instance.
    pub fn finished(&self, job: &Job) {
        self.jobs_finished
            .get_or_create(&OutcomeLabel {
                outcome: job.state.as_str(),
            })
            .inc();
        if let Some(done) = job.completed_at {
            let seconds = (done - job.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.round_trip_seconds.observe(seconds.max(0.0));
        }
    }

    /// Jobs expired by the reaper, with their ages in seconds.
    pub fn reaped(&self, ages: &[f64], deleted: u64) {
        if !ages.is_empty() {
            self.jobs_finished
                .get_or_create(&OutcomeLabel {
                    outcome: JobState::Expired.as_str(),
                })
                .inc_by(ages.len() as u64);
            self.reaper_expired.inc_by(ages.len() as u64);
            for age in ages {
                self.round_trip_seconds.observe(age.max(0.0));
            }
        }
        self.reaper_deleted.inc_by(deleted);
    }

    pub fn received(&self, channel: &'static str) {
        self.notifications_received
            .get_or_create(&ChannelLabel { channel })
            .inc();
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}
