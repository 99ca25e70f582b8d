//! One broker instance (`backchannel serve`): started, run and shut down.
//!
//! - [`check`]: `serve --check` and `--check-tokens`, the preflight without
//!   serving, one line per check;
//! - [`preflight`]: what `serve` settles before it serves (where connections
//!   go, that the direct URL gives real sessions, the schema and the rights),
//!   and [`migrate`], the schema owner's path;
//! - [`start`](mod@start): the broker, its background loops and the HTTP server;
//! - [`shutdown`]: the signals, and the graceful stop of a [`Running`] instance;
//! - [`serve`]: all of it for `backchannel serve`, with systemd told
//!   (`READY=1`, `STOPPING=1`).

pub mod check;
pub mod preflight;
pub mod shutdown;
pub mod start;

pub use preflight::migrate;
pub use shutdown::shutdown_signal;
pub use start::{Running, start, start_notifying};

use crate::config::Settings;
use crate::telemetry::systemd::Notifier;

/// `backchannel serve`: start, tell systemd `READY=1` once the start-up
/// checks passed and the server listens (never for a start that fails), run
/// until SIGTERM or SIGINT, tell systemd `STOPPING=1`, stop gracefully.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let running = start_notifying(settings, notifier.clone()).await?;
    notifier.ready(&format!(
        "serving on {}, schema version {}",
        running.addr, running.schema_version
    ));
    shutdown_signal().await;
    tracing::info!("shutdown signal received");
    notifier.stopping();
    running.stop().await;
    Ok(())
}
