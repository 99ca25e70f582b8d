//! The agent's Prometheus metrics, served on its health listener
//! (`--health-bind`) at `GET /metrics`, next to the process's own.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::telemetry::registry::{Exposition, register};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Why an open stream ended.
pub const DISCONNECTS: [&str; 5] = ["closed", "silent", "read_error", "invalid", "shutdown"];
/// Why an attempt opened no stream.
pub const FAILURES: [&str; 5] = ["busy", "refused", "timeout", "unreachable", "unexpected"];
/// How a job ended (the `outcome` of its log line).
pub const OUTCOMES: [&str; 10] = [
    "done",
    "failed",
    "seal_refused",
    "conflict",
    "gone",
    "unknown",
    "refused",
    "deadline_passed",
    "expired",
    "abandoned",
];

/// Why the handler failed a job (`handler_failures_total{reason}`).
pub const HANDLER_FAILURES: [&str; 6] = [
    "status",
    "unreachable",
    "timeout",
    "redirect",
    "not_the_kit",
    "failed",
];

pub struct AgentMetrics {
    exposition: Exposition,
    pub stream: AgentStreamMetrics,
    pub jobs: AgentJobMetrics,
    pub handler: AgentHandlerMetrics,
    pub sealed: AgentSealedMetrics,
}

/// Sealed jobs (docs/sealed.md): opened, refused by code, the replay cache,
/// the key reloads.
#[derive(Default)]
pub struct AgentSealedMetrics {
    pub opened: Counter,
    pub refused: Family<CodeLabel, Counter>,
    pub replay_entries: Gauge,
    pub key_reloads: Family<ResultLabel, Counter>,
}

/// The stream: held or not, opened, ended, refused.
#[derive(Default)]
pub struct AgentStreamMetrics {
    pub up: Gauge,
    pub connects: Counter,
    pub disconnects: Family<ReasonLabel, Counter>,
    pub failures: Family<ReasonLabel, Counter>,
}

/// The jobs: how each ended, how many are handled now, the handler's time.
pub struct AgentJobMetrics {
    pub outcomes: Family<OutcomeLabel, Counter>,
    pub in_flight: Gauge,
    pub repeats: Counter,
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
        let (stream, jobs) = (AgentStreamMetrics::new(), AgentJobMetrics::new());
        let handler = AgentHandlerMetrics::new();
        let sealed = AgentSealedMetrics::new();
        let exposition = Exposition::new("backchannel_agent", |r| {
            stream.register(r);
            jobs.register(r);
            handler.register(r);
            sealed.register(r);
        });
        AgentMetrics {
            exposition,
            stream,
            jobs,
            handler,
            sealed,
        }
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        self.exposition.encode()
    }
}

impl AgentStreamMetrics {
    fn new() -> AgentStreamMetrics {
        let stream = AgentStreamMetrics::default();
        // Series of the known label values exist from the start, at 0, so that
        // rate() and the alerts see them before the first event.
        for reason in DISCONNECTS {
            let _ = stream.disconnects.get_or_create(&ReasonLabel { reason });
        }
        for reason in FAILURES {
            let _ = stream.failures.get_or_create(&ReasonLabel { reason });
        }
        stream
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.up => "stream_up", "1 while the agent holds the stream";
            self.connects => "stream_connects", "Streams opened";
            self.disconnects => "stream_disconnects", "Open streams that ended, by reason (closed, silent, read_error, invalid, shutdown)";
            self.failures => "stream_failures", "Attempts that opened no stream, by reason (busy, refused, timeout, unreachable, unexpected)";
        );
    }
}

impl AgentJobMetrics {
    fn new() -> AgentJobMetrics {
        let jobs = AgentJobMetrics {
            outcomes: Family::default(),
            in_flight: Gauge::default(),
            repeats: Counter::default(),
            // 1 ms .. ~150 s
            handler_seconds: Histogram::new(exponential_buckets(0.001, 2.5, 14)),
            answer_retries: Counter::default(),
        };
        for outcome in OUTCOMES {
            let _ = jobs.outcomes.get_or_create(&OutcomeLabel { outcome });
        }
        jobs
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.outcomes => "jobs", "Jobs handled, by outcome (done, failed, conflict, gone, expired, abandoned, ...)";
            self.in_flight => "jobs_in_flight", "Jobs being handled now";
            self.repeats => "job_repeats", "Job events ignored because the same job was already being handled";
            self.handler_seconds => "handler_seconds", "Time the internal endpoint took to answer a job (or the echo)";
            self.answer_retries => "answer_retries", "Answers posted again after a network error or a 5xx";
        );
    }
}

impl AgentSealedMetrics {
    fn new() -> AgentSealedMetrics {
        let sealed = AgentSealedMetrics::default();
        for code in crate::seal::RefusalCode::ALL {
            let code = code.as_str();
            let _ = sealed.refused.get_or_create(&CodeLabel { code });
        }
        for result in ["applied", "refused"] {
            let _ = sealed.key_reloads.get_or_create(&ResultLabel { result });
        }
        sealed
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.opened => "sealed_opened", "Sealed jobs checked and opened (then forwarded)";
            self.refused => "sealed_refused", "Jobs refused by the sealing checks, by code (seal_malformed, seal_bad_signature, seal_mismatch, seal_expired, seal_unknown_key, seal_replay, seal_required); the handler was not called";
            self.replay_entries => "sealed_replay_entries", "Entries in the replay cache (bounded: at 100000 live entries new sealed jobs are refused seal_replay)";
            self.key_reloads => "sealed_key_reloads", "Reloads of the sealing key files on SIGHUP, by result (applied, refused: the keys in force stay)";
        );
    }
}

/// The handler (the forward URL): its failures and the tries to reach it.
#[derive(Default)]
pub struct AgentHandlerMetrics {
    pub failures: Family<ReasonLabel, Counter>,
    pub unreachable: Counter,
    pub retries: Counter,
}

impl AgentHandlerMetrics {
    fn new() -> AgentHandlerMetrics {
        let handler = AgentHandlerMetrics::default();
        for reason in HANDLER_FAILURES {
            let _ = handler.failures.get_or_create(&ReasonLabel { reason });
        }
        handler
    }

    fn register(&self, r: &mut Registry) {
        register!(r,
            self.failures => "handler_failures", "Jobs the handler failed, by reason (status, unreachable, timeout, redirect, not_the_kit, failed)";
            self.unreachable => "handler_unreachable", "Tries to reach the handler that found no one (refused or reset connections)";
            self.retries => "handler_retries", "Forwards tried again after the handler could not be reached";
        );
    }
}
