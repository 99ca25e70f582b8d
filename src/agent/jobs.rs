//! The jobs in flight: at most `concurrency` at a time, each id once, each
//! answered on its own task, all drained at shutdown.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::answer::{self, Posted};
use super::args::{Config, Target};
use super::forward::{self, Handled};
use super::status::Reporter;
use crate::job::{Answer, JobEvent};

/// Shared by the stream reader (which admits jobs) and the job tasks.
pub struct Jobs {
    config: Arc<Config>,
    broker: Client,
    handler: forward::Handler,
    reporter: Reporter,
    in_flight: Mutex<HashSet<i64>>,
    permits: Arc<Semaphore>,
    /// Cancelled when the shutdown grace is over: tasks give up their job.
    abandon: CancellationToken,
}

/// What became of a job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Started,
    /// The same job is already being handled in this process.
    Repeat,
}

impl Jobs {
    pub fn new(config: Arc<Config>, broker: Client, handler: Client, reporter: Reporter) -> Jobs {
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let handler = forward::Handler::new(handler, reporter.clone(), config.expect_kit);
        Jobs {
            config,
            broker,
            handler,
            reporter,
            in_flight: Mutex::new(HashSet::new()),
            permits,
            abandon: CancellationToken::new(),
        }
    }

    /// Start handling `job`, waiting for a free slot first. Cancel-safe: if the
    /// wait is dropped, nothing was started and the id is free again.
    pub async fn admit(self: &Arc<Self>, job: JobEvent) -> Admitted {
        let Some(claim) = Claim::take(self, job.id) else {
            self.reporter.repeat();
            return Admitted::Repeat;
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.reporter.job_started();
        let jobs = self.clone();
        tokio::spawn(async move { jobs.handle(job, claim, permit).await });
        Admitted::Started
    }

    async fn handle(self: Arc<Self>, job: JobEvent, _claim: Claim, _permit: OwnedSemaphorePermit) {
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = self.forward_and_answer(&job) => outcome,
            _ = self.abandon.cancelled() => Outcome::Abandoned,
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let answered = matches!(
            outcome,
            Outcome::Answered {
                posted: Posted::Accepted,
                ..
            }
        );
        self.reporter.job_finished(outcome.as_str(), answered);
        let (answer, handler) = match &outcome {
            Outcome::Answered {
                answer, handler, ..
            } => (*answer, handler.to_string()),
            _ => ("", String::new()),
        };
        tracing::info!(
            job_id = job.id,
            kind = %job.kind,
            attempt = job.attempt,
            outcome = outcome.as_str(),
            answer,
            handler,
            duration_ms,
            "job"
        );
    }

    async fn forward_and_answer(&self, job: &JobEvent) -> Outcome {
        let Some(left) = answer::until(job.deadline) else {
            return Outcome::Expired;
        };
        let handling = Instant::now();
        let (reply, handler) = match &self.config.target {
            Target::Echo => forward::echo(job),
            Target::Forward(url, secret) => {
                forward::forward(&self.handler, url, secret.as_ref(), job, left).await
            }
        };
        self.reporter.handled(handling.elapsed());
        let answer = match reply {
            Answer::Result(_) => "result",
            Answer::Error(_) => "error",
        };
        let posted = answer::post(
            &self.broker,
            &self.config,
            &self.reporter,
            job.id,
            &reply,
            job.deadline,
        )
        .await;
        if let Posted::Refused(status @ (401 | 403)) = posted {
            tracing::error!(
                job_id = job.id,
                status,
                "the broker refused the listener token"
            );
        }
        Outcome::Answered {
            answer,
            handler,
            posted,
        }
    }

    /// After the stream is closed: wait for the jobs in flight, at most
    /// `grace`, then make the rest give up (they stay open on the broker and
    /// are sent again on the next stream).
    pub async fn drain(&self, grace: Duration) {
        let all = self.config.concurrency as u32;
        let everyone = self.permits.acquire_many(all);
        if tokio::time::timeout(grace, everyone).await.is_err() {
            let left = self.in_flight.lock().expect("in-flight set").len();
            tracing::warn!(
                jobs = left,
                "shutdown grace over; giving up the jobs still in flight"
            );
            self.abandon.cancel();
            let _ = self.permits.acquire_many(all).await;
        }
    }
}

/// A job's id held in the in-flight set for as long as the claim lives.
struct Claim {
    jobs: Arc<Jobs>,
    id: i64,
}

impl Claim {
    fn take(jobs: &Arc<Jobs>, id: i64) -> Option<Claim> {
        let fresh = jobs.in_flight.lock().expect("in-flight set").insert(id);
        fresh.then(|| Claim {
            jobs: jobs.clone(),
            id,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut set) = self.jobs.in_flight.lock() {
            set.remove(&self.id);
        }
    }
}

/// How a job ended, for its log line.
enum Outcome {
    Answered {
        answer: &'static str,
        handler: Handled,
        posted: Posted,
    },
    /// Its deadline passed before it could be forwarded.
    Expired,
    /// The shutdown grace ran out first.
    Abandoned,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Answered {
                posted: Posted::Accepted,
                answer,
                ..
            } => {
                if *answer == "result" {
                    "done"
                } else {
                    "failed"
                }
            }
            Outcome::Answered { posted, .. } => posted.as_str(),
            Outcome::Expired => "expired",
            Outcome::Abandoned => "abandoned",
        }
    }
}
