//! The seal gate (docs/sealed.md), off unless `BACKCHANNEL_REQUIRE_SEALED`:
//! with public keys only, a submit's payload must be a well-formed sealed/v1
//! request for the job's kind (signed by one of `BACKCHANNEL_SEAL_SIGNERS`,
//! when given), and an answer to a sealed job must be a sealed answer or a
//! `seal_*` refusal. A refused request stores nothing. The checks themselves
//! are [`crate::seal::Door`]'s; the agent makes all of them again, and more.
//!
//! Decisions: the gate covers the HTTP API; `backchannel.submit()` in SQL is
//! for roles trusted with the table anyway (the agent still checks every
//! job). An answer to a job whose payload is plain (stored before the gate
//! was turned on, or through SQL) passes as it is. The signer files are read
//! again on SIGHUP; a file that cannot be read keeps the signers in force.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Broker, BrokerError};
use crate::config::{ConfigError, Settings};
use crate::job::{Answer, DEFAULT_CHANNEL_NAME, Job, NewJob, Scope};
use crate::seal::{Door, Form, Outcome, form};

/// The gate's door and where its signers come from.
#[derive(Debug)]
pub struct SealGate {
    door: RwLock<Arc<Door>>,
    signers: Vec<PathBuf>,
}

impl SealGate {
    /// The gate `settings` ask for, or `None` when it is off.
    pub fn load(settings: &Settings) -> Result<Option<SealGate>, ConfigError> {
        if !settings.require_sealed {
            return Ok(None);
        }
        let door = door(&settings.seal_signers)?;
        if door.checks_signatures() {
            tracing::info!(
                signers = settings.seal_signers.len(),
                "seal gate on: sealed payloads only, signatures checked"
            );
        } else {
            tracing::info!(
                "seal gate on: sealed payloads only (no signers: form and kind checked)"
            );
        }
        Ok(Some(SealGate {
            door: RwLock::new(Arc::new(door)),
            signers: settings.seal_signers.clone(),
        }))
    }

    /// Read the signer files again; on failure the signers in force stay.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let door = door(&self.signers)?;
        *self.door.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(door);
        Ok(())
    }

    fn current(&self) -> Arc<Door> {
        self.door.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn door(signers: &[PathBuf]) -> Result<Door, ConfigError> {
    Door::from_files(signers).map_err(|e| ConfigError(format!("BACKCHANNEL_SEAL_SIGNERS: {e}")))
}

impl Broker {
    /// A submit through the gate: refused before anything is stored.
    pub(super) fn check_sealed_submit(&self, new: &NewJob) -> Result<(), BrokerError> {
        let Some(gate) = &self.seal_gate else {
            return Ok(());
        };
        let channel = self
            .channel_by_id(new.channel)
            .map_or_else(|| DEFAULT_CHANNEL_NAME.to_owned(), |row| row.name);
        gate.current()
            .check_request(&channel, &new.kind, &new.payload)
            .map(|_| ())
            .map_err(BrokerError::Sealing)
    }

    /// An answer through the gate, checked against its job (read first, so
    /// only when the gate is on): a sealed job takes a sealed answer naming it
    /// and the outcome, or a plain `seal_*` refusal.
    pub(super) async fn check_sealed_answer(
        &self,
        id: i64,
        answer: &Answer,
        scope: &Scope,
    ) -> Result<(), BrokerError> {
        let Some(gate) = &self.seal_gate else {
            return Ok(());
        };
        // Another channel's job is not this client's: the answer's own
        // statement leaves it alone, and says so.
        let Some(job) = self.read_now(id).await?.filter(|j| scope.allows(j.channel)) else {
            return Ok(());
        };
        if !is_sealed(&job) {
            return Ok(());
        }
        let (outcome, value) = match answer {
            Answer::Result(value) => (Outcome::Done, value),
            Answer::Error(value) => (Outcome::Failed, value),
        };
        gate.current()
            .check_answer(id, outcome, value)
            .map_err(BrokerError::Sealing)
    }

    /// Read the seal gate's signer files again (SIGHUP); nothing when it is off.
    pub fn reload_seal_signers(&self) -> Result<(), ConfigError> {
        match &self.seal_gate {
            Some(gate) => gate.reload(),
            None => Ok(()),
        }
    }

    /// With signers configured, read them again on every SIGHUP (the same
    /// signal reloads the tokens) until `shutdown`. The handler is installed
    /// before the returned future runs.
    pub fn reload_seal_signers_on_hangup(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        use tokio::signal::unix::{SignalKind, signal};
        let signers = self.seal_gate.as_ref()?.signers.len();
        if signers == 0 {
            return None;
        }
        let hangup = signal(SignalKind::hangup());
        let broker = self.clone();
        Some(async move {
            let Ok(mut hangup) = hangup else {
                tracing::warn!("no SIGHUP handler: the seal signers cannot be reloaded");
                return;
            };
            loop {
                tokio::select! {
                    _ = hangup.recv() => match broker.reload_seal_signers() {
                        Ok(()) => tracing::info!("seal signers reloaded"),
                        Err(error) => tracing::error!(
                            %error,
                            "seal signers not reloaded; the signers in force stay"
                        ),
                    },
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }
}

/// Whether the job's stored payload is sealed (an object with `sealed`).
fn is_sealed(job: &Job) -> bool {
    serde_json::from_str::<Value>(job.payload.get()).is_ok_and(|value| form(&value) == Form::Sealed)
}
