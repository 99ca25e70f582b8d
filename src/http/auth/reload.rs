//! The token set in force, and its reload on SIGHUP: the token files are
//! read again with the same rules as at start-up; a set that breaks one is
//! not applied.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Role, Tokens};
use crate::config::{ConfigError, Settings};
use crate::telemetry::metrics::{Metrics, ResultLabel};
use crate::telemetry::systemd::Notifier;

/// The token set in force. Every request is checked against the current set;
/// [`reload`](LiveTokens::reload) replaces it (on SIGHUP), and a stream ends
/// when the token it was opened with is no longer in it ([`Grant::revoked`](super::Grant::revoked)).
#[derive(Clone)]
pub struct LiveTokens(Arc<watch::Sender<Arc<Tokens>>>);

impl LiveTokens {
    pub fn new(tokens: Tokens) -> LiveTokens {
        LiveTokens(Arc::new(watch::Sender::new(Arc::new(tokens))))
    }

    /// The tokens of `settings`, refused as [`Tokens::load`] refuses them.
    pub fn load(settings: &Settings) -> Result<LiveTokens, ConfigError> {
        Tokens::load(settings).map(LiveTokens::new)
    }

    pub fn current(&self) -> Arc<Tokens> {
        self.0.borrow().clone()
    }

    /// The set in force now, and every set a reload puts in its place.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Tokens>> {
        self.0.subscribe()
    }

    /// Give every configured token its series in the metrics (see
    /// [`HttpMetrics::tokens_configured`](crate::telemetry::metrics::HttpMetrics::tokens_configured)).
    pub fn publish(&self, metrics: &Metrics) {
        let ids: Vec<(String, &'static str)> = self
            .current()
            .all_ids()
            .into_iter()
            .map(|(id, role)| (id.to_string(), role.name()))
            .collect();
        metrics.http.tokens_configured(&ids);
    }

    /// Read the token files again, with the same rules as at start-up. A set
    /// that breaks a rule is not applied: the tokens in force stay, and the
    /// log says why (naming the variable, file and line, never a token).
    pub fn reload(&self, settings: &Settings, metrics: &Metrics) -> Result<(), ConfigError> {
        let result = Tokens::load(settings);
        let label = |result| ResultLabel { result };
        match &result {
            Ok(tokens) => {
                tracing::info!(
                    submitter_tokens = tokens.count(Role::Submitter),
                    listener_tokens = tokens.count(Role::Listener),
                    monitor_tokens = tokens.count(Role::Monitor),
                    "tokens reloaded"
                );
                metrics
                    .http
                    .token_reloads
                    .get_or_create(&label("applied"))
                    .inc();
                metrics.http.tokens_stale.set(0);
            }
            Err(error) => {
                tracing::error!(%error, "tokens not reloaded; the tokens in force stay");
                metrics
                    .http
                    .token_reloads
                    .get_or_create(&label("refused"))
                    .inc();
                metrics.http.tokens_stale.set(1);
            }
        }
        let tokens = result?;
        self.0.send_replace(Arc::new(tokens));
        self.publish(metrics);
        Ok(())
    }

    /// Reload on every SIGHUP until `shutdown`. The handler is installed
    /// here, before the returned future runs: a SIGHUP that arrives as soon as
    /// the instance answers must not end the process (SIGHUP's default).
    /// systemd is told `RELOADING=1` before, `READY=1` (with the outcome in
    /// `STATUS=`) after each reload.
    pub fn reload_on_hangup(
        self,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        notifier: Notifier,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        use tokio::signal::unix::{SignalKind, signal};
        let hangup = signal(SignalKind::hangup());
        async move {
            let mut hangup = match hangup {
                Ok(hangup) => hangup,
                Err(error) => {
                    tracing::warn!(%error, "no SIGHUP handler: tokens cannot be reloaded");
                    return;
                }
            };
            self.reload_loop(&mut hangup, &settings, &metrics, &shutdown, &notifier)
                .await;
        }
    }

    async fn reload_loop(
        &self,
        hangup: &mut tokio::signal::unix::Signal,
        settings: &Settings,
        metrics: &Metrics,
        shutdown: &CancellationToken,
        notifier: &Notifier,
    ) {
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reading the token files again");
                    notifier.reloading();
                    match self.reload(settings, metrics) {
                        Ok(()) => notifier.reloaded("serving; tokens reloaded"),
                        Err(_) => notifier.reloaded(
                            "serving; the token files were refused at the last reload (see the \
                             log): the tokens in force stay",
                        ),
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
