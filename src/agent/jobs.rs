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
use super::sealed;
use super::status::Reporter;
use crate::job::{Answer, JobEvent};
use crate::seal::{Delivery, Incoming, Opened, Opener, Refusal, unix_now};

/// Shared by the stream reader (which admits jobs) and the job tasks.
pub struct Jobs {
    config: Arc<Config>,
    broker: Client,
    handler: forward::Handler,
    reporter: Reporter,
    /// Every job goes through it when sealing is configured.
    opener: Option<Arc<Opener>>,
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
    pub fn new(
        config: Arc<Config>,
        (broker, handler): (Client, Client),
        reporter: Reporter,
        opener: Option<Arc<Opener>>,
    ) -> Jobs {
        let permits = Arc::new(Semaphore::new(config.concurrency));
        let handler = forward::Handler::new(handler, reporter.clone(), config.expect_kit);
        Jobs {
            config,
            broker,
            handler,
            reporter,
            opener,
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
            } | Outcome::Refused {
                posted: Posted::Accepted,
                ..
            }
        );
        self.reporter.job_finished(outcome.as_str(), answered);
        let (answer, handler, sealed, refusal) = match &outcome {
            Outcome::Answered {
                answer,
                handler,
                sealed,
                ..
            } => (*answer, handler.to_string(), *sealed, ""),
            Outcome::Refused { code, .. } => ("error", String::new(), true, *code),
            _ => ("", String::new(), false, ""),
        };
        tracing::info!(
            job_id = job.id,
            kind = %job.kind,
            attempt = job.attempt,
            outcome = outcome.as_str(),
            answer,
            handler,
            sealed,
            refusal,
            duration_ms,
            "job"
        );
    }

    async fn forward_and_answer(&self, job: &JobEvent) -> Outcome {
        let Some(left) = answer::until(job.deadline) else {
            return Outcome::Expired;
        };
        let opened = match self.open(job) {
            Ok(opened) => opened,
            Err(refusal) => return self.refuse(job, &refusal).await,
        };
        let opened = opened.as_deref();
        let handling = Instant::now();
        let (reply, handler) = match &self.config.target {
            Target::Echo => forward::echo(forward::payload(job, opened)),
            Target::Forward(url, secret) => {
                forward::forward(&self.handler, url, secret.as_ref(), job, opened, left).await
            }
        };
        self.reporter.handled(handling.elapsed());
        let answer = match reply {
            Answer::Result(_) => "result",
            Answer::Error(_) => "error",
        };
        let responder = opened.map(|opened| &opened.responder);
        let reply = match responder {
            Some(responder) => sealed::seal_answer(responder, reply),
            None => reply,
        };
        let posted = self.post(job, &reply, responder).await;
        Outcome::Answered {
            answer,
            handler,
            posted,
            sealed: opened.is_some(),
        }
    }

    /// The job's payload through the opener: `None` for a plain payload (or
    /// no sealing configured), the opened request, or the refusal.
    fn open(&self, job: &JobEvent) -> Result<Option<Box<Opened>>, Refusal> {
        let Some(opener) = &self.opener else {
            return Ok(None);
        };
        let delivery = Delivery {
            id: job.id,
            kind: &job.kind,
            payload: job.payload.get(),
        };
        let incoming = opener.open(delivery, unix_now());
        self.reporter.replay_entries(opener.replay_entries());
        match incoming {
            Ok(Incoming::Plain) => Ok(None),
            Ok(Incoming::Sealed(opened)) => {
                self.reporter.sealed_opened();
                Ok(Some(opened))
            }
            Err(refusal) => {
                self.reporter.sealed_refused(refusal.code.as_str());
                Err(refusal)
            }
        }
    }

    /// Post the refusal as the job's plain `failed` error; the handler is
    /// not called.
    async fn refuse(&self, job: &JobEvent, refusal: &Refusal) -> Outcome {
        tracing::warn!(
            job_id = job.id,
            kind = %job.kind,
            code = refusal.code.as_str(),
            reason = %refusal.message,
            "sealed job refused"
        );
        let error = Answer::Error(refusal.to_error());
        let posted = self.post(job, &error, None).await;
        Outcome::Refused {
            code: refusal.code.as_str(),
            posted,
        }
    }

    async fn post(
        &self,
        job: &JobEvent,
        reply: &Answer,
        responder: Option<&crate::seal::Responder>,
    ) -> Posted {
        let posted = answer::post(
            &self.broker,
            &self.config,
            &self.reporter,
            (job.id, job.deadline),
            reply,
            responder,
        )
        .await;
        if let Posted::Refused(status @ (401 | 403)) = posted {
            tracing::error!(
                job_id = job.id,
                status,
                "the broker refused the listener token"
            );
        }
        posted
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
        /// Opened, and answered sealed.
        sealed: bool,
    },
    /// A sealed job refused (`code`), its refusal posted; the handler was
    /// not called.
    Refused { code: &'static str, posted: Posted },
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
            Outcome::Refused {
                posted: Posted::Accepted,
                ..
            } => "seal_refused",
            Outcome::Refused { posted, .. } => posted.as_str(),
            Outcome::Expired => "expired",
            Outcome::Abandoned => "abandoned",
        }
    }
}
