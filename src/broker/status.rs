//! What operators ask: who holds the stream, how many jobs are where, metrics.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{Broker, BrokerError};
use crate::job::{ChannelId, format_time};
use crate::telemetry::metrics::BatchLabel;

/// `GET /v1/listener`: the stream holder anywhere in the cluster.
#[derive(Debug, Serialize)]
pub struct ListenerStatus {
    pub held: bool,
    pub listener_id: Option<String>,
    pub instance: Option<String>,
    #[serde(serialize_with = "opt_time")]
    pub since: Option<DateTime<Utc>>,
}

/// `GET /v1/stats`: jobs by state and the age of the oldest pending job.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub jobs: Value,
    pub oldest_pending_age_seconds: Option<f64>,
}

fn opt_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(t)),
        None => s.serialize_none(),
    }
}

const STATES: [&str; 6] = [
    "pending",
    "delivered",
    "done",
    "failed",
    "expired",
    "cancelled",
];

impl Broker {
    pub async fn listener_status(&self, channel: ChannelId) -> Result<ListenerStatus, BrokerError> {
        let holder = self.store.holder(channel).await?;
        Ok(match holder {
            None => ListenerStatus {
                held: false,
                listener_id: None,
                instance: None,
                since: None,
            },
            Some(h) => ListenerStatus {
                held: true,
                listener_id: h.listener_id,
                instance: h.instance,
                since: h.since,
            },
        })
    }

    pub async fn stats(&self, channel: ChannelId) -> Result<Stats, BrokerError> {
        let (counts, oldest) = self.store.stats(channel).await?;
        let jobs = STATES
            .iter()
            .map(|state| {
                (
                    state.to_string(),
                    counts.get(state).cloned().unwrap_or(Value::from(0)),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        Ok(Stats {
            jobs: Value::Object(jobs),
            oldest_pending_age_seconds: oldest,
        })
    }

    /// The metrics text, with the scrape-time gauges refreshed.
    pub async fn metrics_text(&self) -> String {
        let m = &self.metrics;
        m.jobs.requests_waiting.set(self.hub.waiting() as i64);
        m.wake
            .listen_connected
            .set(i64::from(self.hub.is_listening()));
        let pool = self.store.pool().status();
        m.database.pool_size.set(pool.size as i64);
        m.database
            .pool_in_use
            .set(pool.size.saturating_sub(pool.available) as i64);
        m.database.pool_waiting.set(pool.waiting as i64);
        m.database
            .statements_unnamed
            .set(i64::from(self.store.unnamed()));
        let (inserts, finishes) = self.store.queued();
        for (kind, queued) in [("insert", inserts), ("finish", finishes)] {
            m.database
                .batch_queued
                .get_or_create(&BatchLabel { kind })
                .set(queued as i64);
        }
        let usage = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.store.notification_queue_usage(),
        );
        if let Ok(Ok(usage)) = usage.await {
            m.wake.notification_queue_usage.set(usage);
        }
        // One more query per scrape; its success doubles as the database check of `ready`.
        let oldest = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.store.oldest_pending_age(),
        );
        let database = if let Ok(Ok(age)) = oldest.await {
            m.jobs.oldest_pending_age_seconds.set(age.unwrap_or(0.0));
            true
        } else {
            false
        };
        let listening = self.polling().is_some() || self.hub.is_listening();
        m.ready.set(i64::from(database && listening));
        m.encode()
    }
}
