//! Sealed jobs (docs/sealed.md): the agent's keys, read at start and again on
//! SIGHUP, and the [`Opener`] every job goes through.
//!
//! A key file that cannot be read (at start: the agent refuses to start; on
//! SIGHUP: the keys in force stay) is named in the log with what is wrong
//! with it, never with a byte of it ([`crate::seal::KeyError`]'s messages).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::AgentError;
use super::args::Sealing;
use super::status::Reporter;
use crate::job::Answer;
use crate::seal::{Keyring, Opener, Outcome, RecipientKey, Responder, SignerPublic};

/// Read every key file of `sealing`; the first that fails is the error,
/// named with its setting and file. A directory stands for the files in it
/// named `*.key` (`--open-with`) or `*.pub` (`--trust-signer`), so that a key
/// added to it (or removed) takes effect on the next SIGHUP.
pub fn keyring(sealing: &Sealing) -> Result<Keyring, AgentError> {
    let name = "BACKCHANNEL_OPEN_WITH";
    let recipients = files(name, &sealing.open_with, "key")?
        .iter()
        .map(|path| RecipientKey::read(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::Config(format!("{name}: {e}")))?;
    let name = "BACKCHANNEL_TRUST_SIGNER";
    let signers = files(name, &sealing.trust_signers, "pub")?
        .iter()
        .map(|path| SignerPublic::read(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::Config(format!("{name}: {e}")))?;
    Ok(Keyring::new(recipients, signers))
}

/// `paths` with each directory replaced by its files ending in `.extension`
/// (sorted); at least one file in all.
fn files(name: &str, paths: &[PathBuf], extension: &str) -> Result<Vec<PathBuf>, AgentError> {
    let mut found = Vec::new();
    for path in paths {
        if !path.is_dir() {
            found.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| AgentError::Config(format!("{name}: {}: {e}", path.display())))?;
        let mut inside: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| file.is_file() && file.extension().is_some_and(|e| e == extension))
            .collect();
        inside.sort();
        found.extend(inside);
    }
    if found.is_empty() {
        return Err(AgentError::Config(format!(
            "{name}: no key file (a directory counts its *.{extension} files)"
        )));
    }
    Ok(found)
}

/// The opener of `sealing`'s keys, on the agent's `channel` (a sealed job's
/// header must name it), with the default replay cache
/// ([`crate::seal::DEFAULT_REPLAY_CAPACITY`] entries).
pub fn opener(sealing: &Sealing, channel: &str) -> Result<Opener, AgentError> {
    Ok(Opener::new(keyring(sealing)?)
        .with_channel(channel)
        .require_sealed(sealing.require_sealed))
}

/// The key ids in force, for the log (public: they travel in every header).
fn describe(keys: &Keyring) -> (String, String) {
    let ids = |kids: Vec<String>| kids.join(",");
    (
        ids(keys
            .recipients()
            .iter()
            .map(|k| k.kid().to_string())
            .collect()),
        ids(keys.signers().iter().map(|k| k.kid().to_string()).collect()),
    )
}

/// Log the keys in force (their ids).
pub fn log_keys(opener: &Opener, what: &'static str) {
    let (recipients, signers) = describe(&opener.keys());
    tracing::info!(
        recipient_keys = %recipients,
        trusted_signers = %signers,
        require_sealed = opener.requires_sealed(),
        "{what}"
    );
}

/// Read the key files again; on any failure keep the keys in force.
pub fn reload(opener: &Opener, sealing: &Sealing, reporter: &Reporter) -> Result<(), AgentError> {
    match keyring(sealing) {
        Ok(keys) => {
            opener.reload(keys);
            reporter.key_reload(true);
            log_keys(opener, "sealing keys reloaded");
            Ok(())
        }
        Err(error) => {
            reporter.key_reload(false);
            tracing::error!(%error, "sealing keys not reloaded; the keys in force stay");
            Err(error)
        }
    }
}

/// Reload the keys (when sealing is configured) on every SIGHUP until
/// `shutdown`. The handler is installed before the returned future runs, and
/// always, so that a SIGHUP (`systemctl reload`) never ends the process (its
/// default) once the agent has started.
pub fn reload_on_hangup(
    keys: Option<(Arc<Opener>, Sealing)>,
    reporter: Reporter,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hangup = signal(SignalKind::hangup());
    async move {
        let mut hangup = match hangup {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(%error, "no SIGHUP handler: the sealing keys cannot be reloaded");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => match &keys {
                    Some((opener, sealing)) => {
                        tracing::info!("SIGHUP: reading the sealing key files again");
                        let _ = reload(opener, sealing, &reporter);
                    }
                    None => tracing::info!("SIGHUP: no sealing keys configured, nothing to reload"),
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// The handler's answer sealed for the job `responder` opened, with the
/// job's outcome (`done` for a result, `failed` for an error). Should sealing
/// itself fail (the system's random number generator), a plain error says
/// so: never the answer in clear.
pub fn seal_answer(responder: &Responder, answer: Answer) -> Answer {
    let sealed = match &answer {
        Answer::Result(value) => responder.seal(Outcome::Done, value).map(Answer::Result),
        Answer::Error(value) => responder.seal(Outcome::Failed, value).map(Answer::Error),
    };
    sealed.unwrap_or_else(|error| {
        tracing::error!(job_id = responder.job(), %error, "cannot seal the answer");
        Answer::Error(json!({"message": "the agent could not seal the answer"}))
    })
}
