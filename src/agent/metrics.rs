//! The agent's Prometheus metrics, served on its health listener
//! (`--health-bind`) at `GET /metrics`, next to the process's own.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Why an open stream ended.
pub const DISCONNECTS: [&str; 5] = ["closed", "silent", "read_error", "invalid", "shutdown"];
/// Why an attempt opened no stream.
pub const FAILURES: [&str; 5] = ["busy", "refused", "timeout", "unreachable", "unexpected"];
/// How a job ended (the `outcome` of its log line).
pub const OUTCOMES: [&str; 9] = [
    "done",
    "failed",
    "conflict",
    "gone",
    "unknown",
    "refused",
    "deadline_passed",
    "expired",
    "abandoned",
];

pub struct AgentMetrics {
    registry: Registry,
    pub stream_up: Gauge,
    pub stream_connects: Counter,
    pub stream_disconnects: Family<ReasonLabel, Counter>,
    pub stream_failures: Family<ReasonLabel, Counter>,
    pub jobs: Family<OutcomeLabel, Counter>,
    pub jobs_in_flight: Gauge,
    pub job_repeats: Counter,
    pub handler_seconds: Histogram,
    pub answer_retries: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics::new()
    }
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentMetrics")
    }
}

impl AgentMetrics {
    pub fn new() -> AgentMetrics {
        let m = AgentMetrics {
            registry: Registry::default(),
            stream_up: Gauge::default(),
            stream_connects: Counter::default(),
            stream_disconnects: Family::default(),
            stream_failures: Family::default(),
            jobs: Family::default(),
            jobs_in_flight: Gauge::default(),
            job_repeats: Counter::default(),
            // 1 ms .. ~150 s
            handler_seconds: Histogram::new(exponential_buckets(0.001, 2.5, 14)),
            answer_retries: Counter::default(),
        };
        // Series of the known label values exist from the start, at 0, so that
        // rate() and the alerts see them before the first event.
        for reason in DISCONNECTS {
            let _ = m.stream_disconnects.get_or_create(&ReasonLabel { reason });
        }
        for reason in FAILURES {
            let _ = m.stream_failures.get_or_create(&ReasonLabel { reason });
        }
        for outcome in OUTCOMES {
            let _ = m.jobs.get_or_create(&OutcomeLabel { outcome });
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(crate::process::ProcessCollector));
        let r = registry.sub_registry_with_prefix("backchannel_agent");
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
            "stream_up",
            "1 while the agent holds the stream",
            m.stream_up.clone(),
        );
        r.register(
            "stream_connects",
            "Streams opened",
            m.stream_connects.clone(),
        );
        r.register(
            "stream_disconnects",
            "Open streams that ended, by reason (closed, silent, read_error, invalid, shutdown)",
            m.stream_disconnects.clone(),
        );
        r.register(
            "stream_failures",
            "Attempts that opened no stream, by reason (busy, refused, timeout, unreachable, unexpected)",
            m.stream_failures.clone(),
        );
        r.register(
            "jobs",
            "Jobs handled, by outcome (done, failed, conflict, gone, expired, abandoned, ...)",
            m.jobs.clone(),
        );
        r.register(
            "jobs_in_flight",
            "Jobs being handled now",
            m.jobs_in_flight.clone(),
        );
        r.register(
            "job_repeats",
            "Job events ignored because the same job was already being handled",
            m.job_repeats.clone(),
        );
        r.register(
            "handler_seconds",
            "Time the internal endpoint took to answer a job (or the echo)",
            m.handler_seconds.clone(),
        );
        r.register(
            "answer_retries",
            "Answers posted again after a network error or a 5xx",
            m.answer_retries.clone(),
        );
        AgentMetrics { registry, ..m }
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String");
        text
    }
}
