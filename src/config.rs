//! Command line and environment: every setting is a flag and a variable, the flag wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Submit one job, optionally wait, print it as JSON (exit 0 only for `done`).
    Submit(crate::cli::SubmitArgs),
    /// Print who holds the stream and how many jobs are where.
    Status(crate::cli::StatusArgs),
    /// The listener side: hold the stream, forward each job to an internal
    /// HTTP endpoint, post the answer back, reconnect by itself.
    Agent(Box<crate::agent::AgentArgs>),
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

    /// PostgreSQL URL for the sessions that must not go through a transaction
    /// pooler: the LISTEN connection, the stream's advisory lock, migrations
    /// (default: DATABASE_URL).
    #[arg(long, env = "BACKCHANNEL_DIRECT_DATABASE_URL", hide_env_values = true)]
    pub direct_database_url: Option<String>,

    /// PostgreSQL's synchronous_commit for the broker's sessions (on, off, local,
    /// remote_write, remote_apply; default: the database's own setting). `off`
    /// removes the WAL flush from every commit; a PostgreSQL crash may then
    /// forget the last fraction of a second of submits and answers (see README).
    #[arg(long, env = "BACKCHANNEL_SYNCHRONOUS_COMMIT")]
    pub synchronous_commit: Option<String>,

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

    /// A file of more submitter tokens: one per line, blank lines and `#`
    /// comments ignored (read at start, added to --submitter-tokens).
    #[arg(
        long = "submitter-tokens-file",
        env = "BACKCHANNEL_SUBMITTER_TOKENS_FILE"
    )]
    pub submitter_tokens_file: Option<PathBuf>,

    /// A file of more listener tokens, like --submitter-tokens-file.
    #[arg(
        long = "listener-tokens-file",
        env = "BACKCHANNEL_LISTENER_TOKENS_FILE"
    )]
    pub listener_tokens_file: Option<PathBuf>,

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

    /// Requests that may wait for an answer at once on this instance; more get 503.
    #[arg(long, env = "BACKCHANNEL_MAX_WAITING", default_value_t = 16_384)]
    pub max_waiting: usize,

    /// Seconds a client has to send its request headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "BACKCHANNEL_HEADER_TIMEOUT", default_value_t = 30.0)]
    pub header_timeout: f64,

    /// Seconds a client has to send its whole request body (408 after).
    #[arg(long, env = "BACKCHANNEL_BODY_TIMEOUT", default_value_t = 30.0)]
    pub body_timeout: f64,

    /// Seconds between reaper ticks (expire past-deadline jobs, delete old ones).
    #[arg(long, env = "BACKCHANNEL_REAPER_INTERVAL", default_value_t = 1.0)]
    pub reaper_interval: f64,

    /// Seconds between safety re-checks of the waited-on jobs (one query per instance).
    #[arg(long, env = "BACKCHANNEL_RECHECK_INTERVAL", default_value_t = 5.0)]
    pub recheck_interval: f64,

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
            direct_database_url: None,
            synchronous_commit: None,
            bind: "127.0.0.1:0".parse().expect("valid address"),
            submitter_tokens: submitter_tokens.iter().map(|t| t.to_string()).collect(),
            listener_tokens: listener_tokens.iter().map(|t| t.to_string()).collect(),
            submitter_tokens_file: None,
            listener_tokens_file: None,
            heartbeat: 15.0,
            default_timeout: 30.0,
            max_timeout: 3600.0,
            max_body: 1_048_576,
            retention: 86_400.0,
            pool_size: 16,
            wake: WakeMode::Notify,
            poll_interval_ms: 100,
            instance_id: None,
            max_waiting: 16_384,
            header_timeout: 30.0,
            body_timeout: 30.0,
            reaper_interval: 1.0,
            recheck_interval: 5.0,
            shutdown_grace: 10.0,
        }
    }

    /// Add the tokens of the token files to the lists, and clear the file
    /// settings. A file that cannot be read, holds no token, or holds a token
    /// shorter than [`MIN_TOKEN_LEN`] or with spaces in it is refused; the
    /// message names the variable, the file and the line, never the token.
    pub fn read_token_files(&mut self) -> Result<(), ConfigError> {
        let files = [
            (
                "BACKCHANNEL_SUBMITTER_TOKENS_FILE",
                self.submitter_tokens_file.take(),
                &mut self.submitter_tokens,
            ),
            (
                "BACKCHANNEL_LISTENER_TOKENS_FILE",
                self.listener_tokens_file.take(),
                &mut self.listener_tokens,
            ),
        ];
        for (name, file, tokens) in files {
            if let Some(path) = file {
                tokens.extend(read_token_file(name, &path)?);
            }
        }
        Ok(())
    }

    /// Refuse settings that cannot work, with a message naming the setting.
    /// Messages about tokens never contain a token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_tokens(
            "submitter",
            "BACKCHANNEL_SUBMITTER_TOKENS",
            &self.submitter_tokens,
        )?;
        check_tokens(
            "listener",
            "BACKCHANNEL_LISTENER_TOKENS",
            &self.listener_tokens,
        )?;
        if self
            .submitter_tokens
            .iter()
            .any(|t| self.listener_tokens.iter().any(|l| l == t))
        {
            return Err(ConfigError(
                "the same token is configured for both roles (BACKCHANNEL_SUBMITTER_TOKENS and BACKCHANNEL_LISTENER_TOKENS, or their _FILE): submitter and listener tokens must differ".into(),
            ));
        }
        let positive = [
            ("BACKCHANNEL_HEARTBEAT", self.heartbeat),
            ("BACKCHANNEL_DEFAULT_TIMEOUT", self.default_timeout),
            ("BACKCHANNEL_MAX_TIMEOUT", self.max_timeout),
            ("BACKCHANNEL_RETENTION", self.retention),
            ("BACKCHANNEL_REAPER_INTERVAL", self.reaper_interval),
            ("BACKCHANNEL_HEADER_TIMEOUT", self.header_timeout),
            ("BACKCHANNEL_BODY_TIMEOUT", self.body_timeout),
            ("BACKCHANNEL_RECHECK_INTERVAL", self.recheck_interval),
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
        if let Some(value) = &self.synchronous_commit {
            if !["on", "off", "local", "remote_write", "remote_apply"].contains(&value.as_str()) {
                return Err(ConfigError(
                    "BACKCHANNEL_SYNCHRONOUS_COMMIT must be one of on, off, local, remote_write, remote_apply".into(),
                ));
            }
        }
        if let Some(url) = &self.direct_database_url {
            url.parse::<tokio_postgres::Config>().map_err(|_| {
                ConfigError("BACKCHANNEL_DIRECT_DATABASE_URL is not a valid postgres:// URL".into())
            })?;
        }
        Ok(())
    }

    /// The statement that applies `synchronous_commit` to a new session, if set.
    pub fn session_setup(&self) -> Option<String> {
        self.synchronous_commit
            .as_ref()
            .map(|value| format!("SET synchronous_commit TO {value}"))
    }

    /// The URL of the dedicated sessions (LISTEN, stream lock, migrations).
    pub fn direct_url(&self) -> &str {
        self.direct_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
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

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_timeout)
    }

    pub fn reaper_interval(&self) -> Duration {
        Duration::from_secs_f64(self.reaper_interval)
    }

    pub fn recheck_interval(&self) -> Duration {
        Duration::from_secs_f64(self.recheck_interval)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace.max(0.0))
    }
}

fn check_tokens(role: &str, name: &str, tokens: &[String]) -> Result<(), ConfigError> {
    if tokens.is_empty() || tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ConfigError(format!(
            "no {role} token: set {name} (comma-separated) or {name}_FILE (one per line)"
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

/// The tokens of a token file: one per line, blank lines and `#` comments ignored.
fn read_token_file(name: &str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{name}: cannot read {}: {e}", path.display())))?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() || token.starts_with('#') {
            continue;
        }
        let problem = if token.contains(char::is_whitespace) {
            "contains spaces (one token per line; comments on lines of their own)".to_string()
        } else if token.chars().count() < MIN_TOKEN_LEN {
            format!("is shorter than {MIN_TOKEN_LEN} characters")
        } else {
            tokens.push(token.to_owned());
            continue;
        };
        return Err(ConfigError(format!(
            "{name}: the token on line {} of {} {problem}",
            i + 1,
            path.display()
        )));
    }
    if tokens.is_empty() {
        return Err(ConfigError(format!(
            "{name}: {} holds no token",
            path.display()
        )));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        Settings::new(
            "postgres://postgres@127.0.0.1/db",
            &["submitter-token-0123456789"],
            &["listener-token-0123456789"],
        )
    }

    #[test]
    fn valid_settings_pass() {
        valid().validate().unwrap();
    }

    #[test]
    fn refusals_name_the_setting_and_never_the_token() {
        let mut s = valid();
        s.listener_tokens = vec!["qwe9xk".into()];
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("BACKCHANNEL_LISTENER_TOKENS") && !e.contains("qwe9xk"),
            "{e}"
        );

        let mut s = valid();
        s.listener_tokens = s.submitter_tokens.clone();
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("both roles") && !e.contains("submitter-token-0123456789"),
            "{e}"
        );

        let mut s = valid();
        s.submitter_tokens = vec![];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_SUBMITTER_TOKENS")
        );

        let mut s = valid();
        s.synchronous_commit = Some("sometimes".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_SYNCHRONOUS_COMMIT")
        );

        let mut s = valid();
        s.heartbeat = 0.0;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_HEARTBEAT")
        );
    }

    #[test]
    fn session_setup_only_when_asked() {
        let mut s = valid();
        assert_eq!(s.session_setup(), None);
        s.synchronous_commit = Some("off".into());
        assert_eq!(
            s.session_setup().as_deref(),
            Some("SET synchronous_commit TO off")
        );
    }
}
