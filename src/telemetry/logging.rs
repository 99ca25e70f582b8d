//! Logging with `tracing`: readable by default, JSON with BACKCHANNEL_LOG_FORMAT=json,
//! level from RUST_LOG (default info). The readable lines carry colour only
//! on a terminal, and never with `NO_COLOR` set (<https://no-color.org>): a
//! log file, a pipe or the journal gets plain text. Payloads, results, errors and tokens are never
//! logged: the broker logs ids, kinds, states, sizes and timings, and the
//! dependencies that would log data are capped whatever RUST_LOG says.

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log targets that print personal data, and the most verbose level each may
/// use. tokio-postgres logs every statement's parameters (payloads, results,
/// errors, idempotency keys) at debug.
const CAPPED: &[(&str, Level)] = &[("tokio_postgres::query", Level::INFO)];

/// False for events of a capped target above its level.
fn allowed(metadata: &Metadata<'_>) -> bool {
    CAPPED
        .iter()
        .all(|(target, most)| !metadata.target().starts_with(target) || metadata.level() <= most)
}

/// Colour (ANSI escapes) in the readable format: only when stderr is a
/// terminal and `NO_COLOR` is unset or empty.
fn colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json =
        std::env::var("BACKCHANNEL_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour());
    let cap = filter_fn(allowed);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .finish()
            .with(cap)
            .try_init()
    } else {
        builder.finish().with(cap).try_init()
    };
}
