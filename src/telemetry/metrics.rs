//! Prometheus metrics of one instance, served at `GET /metrics`, grouped by
//! what they describe: jobs, the stream, wake-ups, the database, HTTP.
//! Counters count what this instance did; summed over instances they give the
//! cluster. Gauges that describe shared state are read at scrape time.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::registry::{Exposition, register};
use crate::job::{CHANNEL_DONE, CHANNEL_HOLDER, CHANNEL_NEW, Job, JobState};

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

/// A configured token, by its id (the first 12 hex digits of its SHA-256)
/// and role: only configured tokens get a series, so they stay few.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub token_id: String,
    pub role: &'static str,
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

/// The kinds of group-commit transaction.
const BATCH_KINDS: [&str; 3] = ["insert", "finish", "claim"];

/// The metrics of one instance, by area.
pub struct Metrics {
    exposition: Exposition,
    pub jobs: JobMetrics,
    pub stream: StreamMetrics,
    pub wake: WakeMetrics,
    pub database: DatabaseMetrics,
    pub http: HttpMetrics,
    pub forward: ForwardMetrics,
    /// 1 when this instance is ready, as `/readyz` (set at scrape time).
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let (jobs, stream) = (JobMetrics::new(), StreamMetrics::default());
        // The default channel's series exist from the start, at 0.
        let default = SiteLabel {
            channel: crate::job::DEFAULT_CHANNEL_NAME.to_owned(),
        };
        let _ = stream.by_channel.get_or_create(&default);
        let _ = stream.submitted_by_channel.get_or_create(&default);
        let (wake, database) = (WakeMetrics::new(), DatabaseMetrics::new());
        let (http, ready) = (HttpMetrics::new(), Gauge::default());
        let forward = ForwardMetrics::new();
        let exposition = Exposition::new("backchannel", |r| {
            http.register(r);
            forward.register(r);
            database.register(r);
            register!(r, ready => "ready", "1 when this instance is ready (the database answers and LISTEN is up), as /readyz";);
            jobs.register(r);
            stream.register(r);
            wake.register(r);
        });
        Metrics {
            exposition,
            jobs,
            stream,
            wake,
            database,
            http,
            forward,
            ready,
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        self.exposition.encode()
    }
}

/// Jobs: created, ended, waited for, expired and deleted by the reaper.
pub struct JobMetrics {
    pub submitted: Counter,
    pub finished: Family<OutcomeLabel, Counter>,
    pub undeliverable: Counter,
    pub round_trip_seconds: Histogram,
    pub requests_waiting: Gauge,
    pub oldest_pending_age_seconds: Gauge<f64, AtomicU64>,
    pub reaper_expired: Counter,
    pub reaper_deleted: Counter,
}

impl JobMetrics {
    fn new() -> JobMetrics {
        let jobs = JobMetrics {
            submitted: Counter::default(),
            finished: Family::default(),
            undeliverable: Counter::default(),
            // 0.5 ms .. ~65 s
            round_trip_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            requests_waiting: Gauge::default(),
            oldest_pending_age_seconds: Gauge::default(),
            reaper_expired: Counter::default(),
            reaper_deleted: Counter::default(),
        };
        // Series of the known label values exist from the start, at 0, so that
        // rate() and the alerts see them before the first event.
        for state in [
            JobState::Done,
            JobState::Failed,
            JobState::Expired,
            JobState::Cancelled,
        ] {
            let _ = jobs.outcome(state);
        }
        jobs
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.oldest_pending_age_seconds => "oldest_pending_age_seconds", "Age of the oldest pending job in the cluster (0 when none; one query per scrape)";
            self.submitted => "jobs_submitted", "Jobs created through this instance";
            self.finished => "jobs_finished", "Jobs this instance moved to a terminal state, by outcome";
            self.undeliverable => "jobs_undeliverable", "Jobs the stream could not send (rows written through SQL that no listener could read), ended failed";
            self.round_trip_seconds => "round_trip_seconds", "Time from submit to terminal state of the jobs this instance finished";
            self.requests_waiting => "requests_waiting", "Requests waiting for a job now";
            self.reaper_expired => "reaper_expired", "Jobs expired by this instance's reaper";
            self.reaper_deleted => "reaper_deleted", "Old terminal jobs deleted by this instance's reaper";
        );
    }

    fn outcome(&self, state: JobState) -> Counter {
        let outcome = state.as_str();
        self.finished
            .get_or_create(&OutcomeLabel { outcome })
            .clone()
    }

    /// A job reached a terminal state in this instance.
    pub fn ended(&self, job: &Job) {
        self.outcome(job.state).inc();
        if let Some(done) = job.completed_at {
            let seconds = (done - job.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.round_trip_seconds.observe(seconds.max(0.0));
        }
    }

    /// Jobs expired by the reaper, with their ages in seconds.
    pub fn reaped(&self, ages: &[f64], deleted: u64) {
        if !ages.is_empty() {
            self.outcome(JobState::Expired).inc_by(ages.len() as u64);
            self.reaper_expired.inc_by(ages.len() as u64);
            for age in ages {
                self.round_trip_seconds.observe(age.max(0.0));
            }
        }
        self.reaper_deleted.inc_by(deleted);
    }
}

/// The listener stream held on this instance.
#[derive(Default)]
pub struct StreamMetrics {
    pub connected: Gauge,
    pub connects: Counter,
    pub takeovers: Counter,
    pub conflicts: Counter,
    /// Streams held on this instance, by named channel (docs/channels.md).
    pub by_channel: Family<SiteLabel, Gauge>,
    /// Jobs submitted on this instance, by named channel.
    pub submitted_by_channel: Family<SiteLabel, Counter>,
}

/// A named channel (the label `channel` of the per-channel series; the
/// notification series' `channel` is a PostgreSQL NOTIFY channel).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabel {
    pub channel: String,
}

impl StreamMetrics {
    fn register(&self, r: &mut Registry) {
        register!(r,
            self.by_channel => "channel_stream_connected", "Streams this instance holds, by named channel (0 or 1 each)";
            self.submitted_by_channel => "channel_jobs_submitted", "Jobs submitted on this instance, by named channel";
            self.connected => "stream_connected", "Streams this instance holds (of any channel; 1 while it holds the default one in a setup without channels)";
            self.connects => "stream_connects", "Streams opened on this instance";
            self.takeovers => "stream_takeovers", "Streams opened by taking over the same listener's stale stream";
            self.conflicts => "stream_conflicts", "Stream requests refused with 409 listener_busy";
        );
    }
}

/// Wake-ups between instances: LISTEN in, NOTIFY out.
#[derive(Default)]
pub struct WakeMetrics {
    pub notifications_received: Family<ChannelLabel, Counter>,
    pub notifications_sent: Counter,
    /// Writes committed without their NOTIFY (the queue was full): the
    /// notifier sent it later.
    pub notifications_deferred: Counter,
    pub listen_connected: Gauge,
    pub notification_queue_usage: Gauge<f64, AtomicU64>,
}

impl WakeMetrics {
    fn new() -> WakeMetrics {
        let wake = WakeMetrics::default();
        for channel in [CHANNEL_NEW, CHANNEL_DONE, CHANNEL_HOLDER] {
            let _ = wake
                .notifications_received
                .get_or_create(&ChannelLabel { channel });
        }
        wake
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.notifications_received => "notifications_received", "Notifications received on the LISTEN connection, by channel";
            self.notifications_sent => "notifications_sent", "Notifications this instance sent";
            self.notifications_deferred => "notifications_deferred", "Jobs stored or ended without the NOTIFY of their commit because PostgreSQL's notification queue was full (the notifier sends it once the queue drains)";
            self.listen_connected => "listen_connected", "1 while the LISTEN connection is up";
            self.notification_queue_usage => "pg_notification_queue_usage", "PostgreSQL's pg_notification_queue_usage() (0..1)";
        );
    }

    /// A notification arrived on `channel`.
    pub fn received(&self, channel: &'static str) {
        self.notifications_received
            .get_or_create(&ChannelLabel { channel })
            .inc();
    }
}

/// Why a request was done here instead of forwarded (docs/scaling.md).
pub const FALLBACK_REASONS: [&str; 8] = [
    "unreachable",
    "timeout",
    "refused",
    "unsigned_reply",
    "shutting_down",
    "holder_full",
    "peer_not_allowed",
    "error",
];
/// Why a forwarded request was refused.
pub const HOP_REFUSALS: [&str; 6] = ["signature", "address", "window", "role", "malformed", "off"];

/// A forwarded request, by the route it came in on and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    pub route: &'static str,
    pub outcome: &'static str,
}

/// Forwarding to the stream's holder (docs/scaling.md): requests forwarded
/// by this instance, the ones it did itself instead and why, the hop's
/// latency, and the hops it received and refused.
pub struct ForwardMetrics {
    /// By route and outcome: `relayed` (the holder's answer went back to the
    /// client) or `fallback` (this instance did the work itself).
    pub requests: Family<ForwardLabels, Counter>,
    pub fallbacks: Family<ReasonLabel, Counter>,
    pub seconds: Histogram,
    /// Forwarded requests this instance received and ran, and refused.
    pub received: Counter,
    pub refused: Family<ReasonLabel, Counter>,
}

impl ForwardMetrics {
    fn new() -> ForwardMetrics {
        let forward = ForwardMetrics {
            requests: Family::default(),
            fallbacks: Family::default(),
            seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 16)),
            received: Counter::default(),
            refused: Family::default(),
        };
        // Every series at 0 from the start, so that a rate() or an alert
        // has something to read before the first forward or refusal.
        for route in ["/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/result"] {
            for outcome in ["relayed", "fallback"] {
                let _ = forward
                    .requests
                    .get_or_create(&ForwardLabels { route, outcome });
            }
        }
        for reason in FALLBACK_REASONS {
            let _ = forward.fallbacks.get_or_create(&ReasonLabel { reason });
        }
        for reason in HOP_REFUSALS {
            let _ = forward.refused.get_or_create(&ReasonLabel { reason });
        }
        forward
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.requests => "forward_requests", "Requests this instance forwarded to the stream's holder, by route and outcome (relayed: the holder answered; fallback: this instance did the work itself)";
            self.fallbacks => "forward_fallbacks", "Requests this instance did itself instead of forwarding them, by reason (unreachable, timeout, refused, unsigned_reply, shutting_down, holder_full, peer_not_allowed, error)";
            self.seconds => "forward_seconds", "Time from sending a forwarded request to the holder's answer (a waiting request includes its wait)";
            self.received => "hops_received", "Forwarded requests received from another instance and run here";
            self.refused => "hops_refused", "Forwarded requests refused, by reason (signature, address, window, role, off, malformed)";
        );
    }

    /// A request forwarded on `route` ended as `outcome`.
    pub fn forwarded(&self, route: &'static str, outcome: &'static str) {
        self.requests
            .get_or_create(&ForwardLabels { route, outcome })
            .inc();
    }

    /// A request not forwarded, or forwarded in vain, for `reason`.
    pub fn fell_back(&self, reason: &'static str) {
        self.fallbacks.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// The query pool and the group-commit transactions.
pub struct DatabaseMetrics {
    pub pool_size: Gauge,
    pub pool_in_use: Gauge,
    pub pool_waiting: Gauge,
    /// 1 once the pool sends its statements unnamed (set so, or switched
    /// behind a transaction pooler); read at scrape time.
    pub statements_unnamed: Gauge,
    pub batch_jobs: Family<BatchLabel, Histogram, fn() -> Histogram>,
    pub batch_queued: Family<BatchLabel, Gauge>,
    pub batch_alone: Family<BatchLabel, Counter>,
}

/// Jobs per transaction: fine steps where batches usually are.
fn batch_buckets() -> Histogram {
    Histogram::new([
        0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0, 192.0,
        256.0, 384.0, 512.0,
    ])
}

impl DatabaseMetrics {
    fn new() -> DatabaseMetrics {
        let database = DatabaseMetrics {
            pool_size: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_waiting: Gauge::default(),
            statements_unnamed: Gauge::default(),
            batch_jobs: Family::new_with_constructor(batch_buckets),
            batch_queued: Family::default(),
            batch_alone: Family::default(),
        };
        for kind in BATCH_KINDS {
            let _ = database.batch(kind);
        }
        for kind in ["insert", "finish"] {
            let _ = database.alone(kind);
        }
        database
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.batch_queued => "batch_queued", "Requests waiting for the next group-commit transaction, by kind (insert, finish)";
            self.batch_alone => "batch_alone", "Requests a group commit left to run on their own because another session held their idempotency key or job row, by kind (insert, finish)";
            self.batch_jobs => "batch_jobs", "Jobs per group-commit transaction: inserted, ended (answers and cancels), claimed by the stream";
            self.pool_size => "db_pool_size", "Open connections in the query pool";
            self.pool_in_use => "db_pool_in_use", "Pool connections in use";
            self.pool_waiting => "db_pool_waiting", "Requests waiting for a pool connection";
            self.statements_unnamed => "db_statements_unnamed", "1 when the query pool sends its statements unnamed: BACKCHANNEL_STATEMENTS=unnamed, or switched by itself when DATABASE_URL turned out to go through a transaction pooler that does not keep prepared statements";
        );
    }

    /// The count of requests of `kind` run on their own.
    pub fn alone(&self, kind: &'static str) -> Counter {
        self.batch_alone.get_or_create(&BatchLabel { kind }).clone()
    }

    /// The histogram of jobs per `kind` of group-commit transaction.
    pub fn batch(&self, kind: &'static str) -> Histogram {
        self.batch_jobs.get_or_create(&BatchLabel { kind }).clone()
    }
}

/// Requests at the HTTP edge, and the token reloads.
#[derive(Default)]
pub struct HttpMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub refused: Family<ReasonLabel, Counter>,
    pub token_requests: Family<TokenLabels, Counter>,
    pub token_reloads: Family<ResultLabel, Counter>,
    /// 1 while the token files were refused at the last reload.
    pub tokens_stale: Gauge,
    /// The token series in force (see [`HttpMetrics::tokens_configured`]).
    token_series: std::sync::Mutex<Vec<TokenLabels>>,
}

impl HttpMetrics {
    fn new() -> HttpMetrics {
        let http = HttpMetrics::default();
        for result in ["applied", "refused"] {
            let _ = http.token_reloads.get_or_create(&ResultLabel { result });
        }
        http
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.requests => "http_requests", "Requests answered, by method, route template and status";
            self.refused => "http_refused", "Requests refused with a 4xx, by the error code of the answer";
            self.token_requests => "token_requests", "Requests carrying a configured token, by token id (the first 12 hex digits of its SHA-256) and role, whatever the answer";
            self.token_reloads => "token_reloads", "Token files re-read on SIGHUP, by result (applied or refused)";
            self.tokens_stale => "tokens_stale", "1 when the last SIGHUP's token files were refused: the tokens in force are not those of the files";
        );
    }

    /// The tokens now configured (id, role): each gets its series of
    /// `token_requests` from 0 (so that "no request with this token since"
    /// can be read off), and the series of a token no longer configured is
    /// removed.
    pub fn tokens_configured(&self, tokens: &[(String, &'static str)]) {
        let now: Vec<TokenLabels> = tokens
            .iter()
            .map(|(token_id, role)| TokenLabels {
                token_id: token_id.clone(),
                role,
            })
            .collect();
        let mut series = self.token_series.lock().expect("token series lock");
        for gone in series.iter().filter(|labels| !now.contains(labels)) {
            self.token_requests.remove(gone);
        }
        for labels in &now {
            let _ = self.token_requests.get_or_create(labels);
        }
        *series = now;
    }
}
