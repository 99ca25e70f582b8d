//! Command line and environment: every setting is a flag and a variable, the flag wins.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// backchannel: a private service receives jobs over one outbound SSE stream.
#[derive(Debug, Parser)]
#[command(name = "backchannel", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (applies pending migrations first).
    Serve(Box<Settings>),
    /// Apply the migrations in sql/ and exit.
    Migrate(DatabaseArgs),
    /// Load-test brokers on a scratch database and report (`make bench`).
    Bench(Box<crate::bench::BenchArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

/// How waiters and the stream learn that something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WakeMode {
    /// LISTEN/NOTIFY: woken by the database, no queries while idle.
    Notify,
    /// The old sleep-polling design: re-query the table every poll interval.
    Poll,
}

/// Everything `serve` needs, built once.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// PostgreSQL URL for the query pool.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Address to listen on.
    #[arg(long, env = "BACKCHANNEL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Comma-separated submitter tokens.
    #[arg(
        long = "submitter-tokens",
        env = "BACKCHANNEL_SUBMITTER_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub submitter_tokens: Vec<String>,

    /// Comma-separated listener tokens.
    #[arg(
        long = "listener-tokens",
        env = "BACKCHANNEL_LISTENER_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub listener_tokens: Vec<String>,

    /// Seconds between keepalive comments on the stream.
    #[arg(long, env = "BACKCHANNEL_HEARTBEAT", default_value_t = 15.0)]
    pub heartbeat: f64,

    /// Seconds a job may wait for its answer when the submit names no timeout.
    #[arg(long, env = "BACKCHANNEL_DEFAULT_TIMEOUT", default_value_t = 30.0)]
    pub default_timeout: f64,

    /// The most seconds a submit may ask for (timeout and wait).
    #[arg(long, env = "BACKCHANNEL_MAX_TIMEOUT", default_value_t = 3600.0)]
    pub max_timeout: f64,

    /// The largest request body in bytes.
    #[arg(long, env = "BACKCHANNEL_MAX_BODY", default_value_t = 1_048_576)]
    pub max_body: u64,

    /// Seconds a terminal job is kept before it is deleted.
    #[arg(long, env = "BACKCHANNEL_RETENTION", default_value_t = 86_400.0)]
    pub retention: f64,

    /// Database connections for queries, per instance.
    #[arg(long, env = "BACKCHANNEL_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// notify (LISTEN/NOTIFY) or poll (sleep-polling baseline).
    #[arg(long, env = "BACKCHANNEL_WAKE", value_enum, default_value_t = WakeMode::Notify)]
    pub wake: WakeMode,

    /// Milliseconds between checks in poll mode.
    #[arg(long, env = "BACKCHANNEL_POLL_INTERVAL_MS", default_value_t = 100)]
    pub poll_interval_ms: u64,

    /// A name for this instance in logs and in the stream holder record
    /// (default: host name, process id and a random suffix).
    #[arg(long, env = "BACKCHANNEL_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Seconds of grace for waiting requests and connections at shutdown.
    #[arg(long, env = "BACKCHANNEL_SHUTDOWN_GRACE", default_value_t = 10.0)]
    pub shutdown_grace: f64,
}

/// A setting that cannot work, found before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Shortest token accepted: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

impl Settings {
    /// Settings with defaults for everything but the database and tokens.
    pub fn new(database_url: &str, submitter_tokens: &[&str], listener_tokens: &[&str]) -> Self {
        Settings {
            database_url: database_url.to_owned(),
            bind: "127.0.0.1:0".parse().expect("valid address"),
            submitter_tokens: submitter_tokens.iter().map(|t| t.to_string()).collect(),
            listener_tokens: listener_tokens.iter().map(|t| t.to_string()).collect(),
            heartbeat: 15.0,
            default_timeout: 30.0,
            max_timeout: 3600.0,
            max_body: 1_048_576,
            retention: 86_400.0,
            pool_size: 16,
            wake: WakeMode::Notify,
            poll_interval_ms: 100,
            instance_id: None,
            shutdown_grace: 10.0,
        }
    }

    /// Refuse settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_tokens("BACKCHANNEL_SUBMITTER_TOKENS", &self.submitter_tokens)?;
        check_tokens("BACKCHANNEL_LISTENER_TOKENS", &self.listener_tokens)?;
        if self
            .submitter_tokens
            .iter()
            .any(|t| self.listener_tokens.iter().any(|l| l == t))
        {
            return Err(ConfigError(
                "the same token is configured for both roles: submitter and listener tokens must differ".into(),
            ));
        }
        let positive = [
            ("BACKCHANNEL_HEARTBEAT", self.heartbeat),
            ("BACKCHANNEL_DEFAULT_TIMEOUT", self.default_timeout),
            ("BACKCHANNEL_MAX_TIMEOUT", self.max_timeout),
            ("BACKCHANNEL_RETENTION", self.retention),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(ConfigError(format!(
                    "{name} must be a positive number of seconds"
                )));
            }
        }
        if self.default_timeout > self.max_timeout {
            return Err(ConfigError(
                "BACKCHANNEL_DEFAULT_TIMEOUT must not exceed BACKCHANNEL_MAX_TIMEOUT".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError(
                "BACKCHANNEL_POOL_SIZE must be at least 1".into(),
            ));
        }
        if self.max_body == 0 {
            return Err(ConfigError(
                "BACKCHANNEL_MAX_BODY must be at least 1".into(),
            ));
        }
        if self.poll_interval_ms == 0 {
            return Err(ConfigError(
                "BACKCHANNEL_POLL_INTERVAL_MS must be at least 1".into(),
            ));
        }
        self.database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|_| ConfigError("DATABASE_URL is not a valid postgres:// URL".into()))?;
        Ok(())
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.retention)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace.max(0.0))
    }
}

fn check_tokens(name: &str, tokens: &[String]) -> Result<(), ConfigError> {
    if tokens.is_empty() || tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ConfigError(format!(
            "{name} is required: give at least one token"
        )));
    }
    for (i, token) in tokens.iter().enumerate() {
        if token.trim() != token {
            return Err(ConfigError(format!(
                "{name}: token #{} has leading or trailing spaces",
                i + 1
            )));
        }
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(ConfigError(format!(
                "{name}: token #{} is shorter than {MIN_TOKEN_LEN} characters",
                i + 1
            )));
        }
    }
    Ok(())
}
