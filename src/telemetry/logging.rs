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

/// Whether `BACKCHANNEL_LOG_FORMAT` asks for JSON.
fn json_format() -> bool {
    std::env::var("BACKCHANNEL_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

/// The error that ends the program, on stderr: with JSON logs, one JSON
/// object shaped like the log's own lines (`level` `ERROR`, the message and
/// the error with its causes in `fields`), written whatever `RUST_LOG`
/// says, so that a log pipeline parses it; else `Error: ...` as a program
/// returning an error from `main` prints it. The messages name variables
/// and files, never a secret.
pub fn fatal(error: &anyhow::Error) -> std::process::ExitCode {
    if json_format() {
        eprintln!("{}", fatal_line(error));
    } else {
        eprintln!("Error: {error:?}");
    }
    std::process::ExitCode::FAILURE
}

fn fatal_line(error: &anyhow::Error) -> serde_json::Value {
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::json!({
        "timestamp": timestamp,
        "level": "ERROR",
        "fields": {
            "message": "exiting on an error",
            "error": format!("{error:#}"),
        },
        "target": "backchannel",
    })
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = json_format();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_line_is_json_with_the_causes() {
        let error = anyhow::anyhow!("connection refused").context("cannot connect: DATABASE_URL");
        let line = fatal_line(&error).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "ERROR");
        assert_eq!(
            parsed["fields"]["error"],
            "cannot connect: DATABASE_URL: connection refused"
        );
        assert!(!line.contains('\n'));
    }
}
