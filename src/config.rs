//! `serve`'s settings: every setting is a flag and a variable (the flag wins),
//! each default is written once (in its attribute), and values are parsed into
//! the types the code uses. A leaf: it imports nothing of the crate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{BoolishValueParser, PossibleValue, TypedValueParser};
use clap::{Args, FromArgMatches, ValueEnum};

/// How waiters and the stream learn that something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WakeMode {
    /// LISTEN/NOTIFY: woken by the database, no queries while idle.
    Notify,
    /// The old sleep-polling design: re-query the table every poll interval.
    Poll,
}

/// What `serve` does with the schema at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MigrateMode {
    /// Apply pending migrations first (the role must then own the schema);
    /// with a current schema nothing is changed and no right beyond the
    /// runtime's is used. For development and single-role set-ups.
    Auto,
    /// Never change the schema: refuse to start when it is behind, saying what
    /// to run (`backchannel migrate`, as the owner). For production.
    Check,
}

/// How statements go out on the query pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatementMode {
    /// Prepared once per pooled connection (named statements): the fastest.
    /// Switches to unnamed by itself, for good, at the first statement a
    /// transaction pooler loses or mixes up (sent again, unnamed).
    Prepared,
    /// The unnamed statement with declared parameter types, in one round trip,
    /// and no session settings on pooled connections: for DATABASE_URL
    /// through a transaction-mode pooler that does not keep prepared
    /// statements (PgBouncer before 1.21, or without max_prepared_statements).
    Unnamed,
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

    /// At start-up: auto (apply pending migrations) or check (refuse to start
    /// when the schema is behind; run `backchannel migrate` as its owner).
    #[arg(long, env = "BACKCHANNEL_MIGRATE", value_enum, default_value_t = MigrateMode::Auto)]
    pub migrate: MigrateMode,

    /// Pooled statements: prepared (switching to unnamed by itself on the
    /// first sign of a transaction pooler), or unnamed from the start
    /// (DATABASE_URL through a transaction-mode pooler without prepared
    /// statement support).
    #[arg(long, env = "BACKCHANNEL_STATEMENTS", value_enum, default_value_t = StatementMode::Prepared)]
    pub statements: StatementMode,

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
    /// comments ignored (added to --submitter-tokens).
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

    /// Comma-separated monitor tokens (optional): they read /v1/stats and
    /// /v1/listener, and nothing else.
    #[arg(
        long = "monitor-tokens",
        env = "BACKCHANNEL_MONITOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub monitor_tokens: Vec<String>,

    /// A file of more monitor tokens, like --submitter-tokens-file.
    #[arg(long = "monitor-tokens-file", env = "BACKCHANNEL_MONITOR_TOKENS_FILE")]
    pub monitor_tokens_file: Option<PathBuf>,

    /// Seconds between keepalive comments on the stream.
    #[arg(long, env = "BACKCHANNEL_HEARTBEAT", default_value = "15", value_parser = seconds)]
    pub heartbeat: Duration,

    /// Seconds a job may wait for its answer when the submit names no timeout.
    #[arg(long, env = "BACKCHANNEL_DEFAULT_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub default_timeout: Duration,

    /// The most seconds a submit may ask for (timeout and wait).
    #[arg(long, env = "BACKCHANNEL_MAX_TIMEOUT", default_value = "3600", value_parser = seconds)]
    pub max_timeout: Duration,

    /// The largest request body in bytes.
    #[arg(long, env = "BACKCHANNEL_MAX_BODY", default_value_t = 1_048_576)]
    pub max_body: u64,

    /// Seconds a terminal job is kept before it is deleted.
    #[arg(long, env = "BACKCHANNEL_RETENTION", default_value = "86400", value_parser = seconds)]
    pub retention: Duration,

    /// Database connections for queries, per instance.
    #[arg(long, env = "BACKCHANNEL_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,

    /// notify (LISTEN/NOTIFY) or poll (sleep-polling baseline).
    #[arg(long, env = "BACKCHANNEL_WAKE", value_enum, default_value_t = WakeMode::Notify)]
    pub wake: WakeMode,

    /// Milliseconds between checks in poll mode.
    #[arg(long = "poll-interval-ms", env = "BACKCHANNEL_POLL_INTERVAL_MS", default_value = "100", value_parser = millis)]
    pub poll_interval: Duration,

    /// A name for this instance in logs and in the stream holder record
    /// (default: host name, process id and a random suffix).
    #[arg(long, env = "BACKCHANNEL_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Requests that may wait for an answer at once on this instance; more get 503.
    #[arg(long, env = "BACKCHANNEL_MAX_WAITING", default_value_t = 16_384)]
    pub max_waiting: usize,

    /// Submits, answers and cancels that may queue for the database at once
    /// on this instance (each of the two group commits); more get 503
    /// `overloaded` with Retry-After, nothing stored.
    #[arg(long, env = "BACKCHANNEL_MAX_QUEUED", default_value_t = 4096)]
    pub max_queued: usize,

    /// Seconds a client has to send its request headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "BACKCHANNEL_HEADER_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub header_timeout: Duration,

    /// Seconds a client has to send its whole request body (408 after).
    #[arg(long, env = "BACKCHANNEL_BODY_TIMEOUT", default_value = "30", value_parser = seconds)]
    pub body_timeout: Duration,

    /// Seconds between reaper ticks (expire past-deadline jobs, delete old ones).
    #[arg(long, env = "BACKCHANNEL_REAPER_INTERVAL", default_value = "1", value_parser = seconds)]
    pub reaper_interval: Duration,

    /// Seconds between safety re-checks of the waited-on jobs (one query per instance).
    #[arg(long, env = "BACKCHANNEL_RECHECK_INTERVAL", default_value = "5", value_parser = seconds)]
    pub recheck_interval: Duration,

    /// Seconds of grace for waiting requests and connections at shutdown.
    #[arg(long, env = "BACKCHANNEL_SHUTDOWN_GRACE", default_value = "10", value_parser = seconds)]
    pub shutdown_grace: Duration,

    /// One log line per request (method, route, status, duration, bytes,
    /// client, token id, job id): on or off.
    #[arg(long, env = "BACKCHANNEL_ACCESS_LOG", default_value = "on", value_parser = switch())]
    pub access_log: bool,

    /// The seal gate (docs/sealed.md): refuse a submit whose payload is not a
    /// well-formed sealed/v1 request (400 not_sealed) or was sealed for
    /// another kind (400 seal_mismatch), and an answer to a sealed job that is
    /// neither sealed nor a seal_* refusal (400 not_sealed).
    #[arg(long, env = "BACKCHANNEL_REQUIRE_SEALED", default_value = "off", value_parser = switch())]
    pub require_sealed: bool,

    /// Comma-separated Ed25519 public keys (PEM) of the schedulers: the gate
    /// also verifies each sealed payload's signature (403 seal_bad_signature).
    /// Needs BACKCHANNEL_REQUIRE_SEALED; read again on SIGHUP.
    #[arg(
        long = "seal-signers",
        env = "BACKCHANNEL_SEAL_SIGNERS",
        value_delimiter = ','
    )]
    pub seal_signers: Vec<PathBuf>,
    /// Comma-separated addresses or CIDR blocks of the reverse proxies in
    /// front (e.g. 127.0.0.1,10.0.0.0/8): from these peers only, the access
    /// log's client is taken from X-Forwarded-For (its nearest address not in
    /// this list). Default: none, the client is the peer.
    #[arg(
        long = "trusted-proxies",
        env = "BACKCHANNEL_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = cidr
    )]
    pub trusted_proxies: Vec<Cidr>,

    /// The URL at which the other instances reach this one (http://ADDRESS:PORT
    /// or https://NAME:PORT, no path), recorded with the stream holder so that
    /// they forward their work to it (docs/scaling.md). Default: the bound
    /// address, when it is not a wildcard (0.0.0.0, ::).
    #[arg(long, env = "BACKCHANNEL_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// The secret the instances of a cluster share to sign the requests one
    /// forwards to another (at least 32 bytes; it never travels). Forwarding
    /// is on when this and BACKCHANNEL_PEERS are set.
    #[arg(long, env = "BACKCHANNEL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// A file holding the cluster secret (its first line), instead of
    /// BACKCHANNEL_CLUSTER_SECRET.
    #[arg(long, env = "BACKCHANNEL_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Comma-separated addresses, address blocks (10.0.0.0/8) or host names
    /// of the instances this one may forward to: a holder whose advertised
    /// URL names anything else is not forwarded to.
    #[arg(long, env = "BACKCHANNEL_PEERS", value_delimiter = ',', value_parser = peer)]
    pub peers: Vec<Peer>,

    /// Seconds a forwarded request may take beyond its own wait before this
    /// instance does the work itself (also the connect timeout).
    #[arg(long, env = "BACKCHANNEL_FORWARD_TIMEOUT", default_value = "2", value_parser = seconds)]
    pub forward_timeout: Duration,
}

/// An instance this one may forward to: an address block, or a host name
/// (compared with the advertised URL's host as written, case-insensitively;
/// never resolved to be compared with a block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Block(Cidr),
    Host(String),
}

impl Peer {
    /// Whether the host of a URL (an address, `[v6]`, or a name) is this peer.
    pub fn allows(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match (self, bare.parse::<IpAddr>()) {
            (Peer::Block(block), Ok(ip)) => block.contains(ip),
            (Peer::Host(name), Err(_)) => name.eq_ignore_ascii_case(bare),
            _ => false,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Block(block) => block.fmt(f),
            Peer::Host(name) => f.write_str(name),
        }
    }
}

/// An address, an address block or a host name (letters, digits, `-`, `.`).
pub fn peer(text: &str) -> Result<Peer, String> {
    let text = text.trim();
    if let Ok(block) = cidr(text) {
        return Ok(Peer::Block(block));
    }
    let name_like = !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && text.chars().any(|c| c.is_ascii_alphabetic());
    if name_like {
        Ok(Peer::Host(text.to_ascii_lowercase()))
    } else {
        Err(format!(
            "{text:?} is not an address, an address/prefix block or a host name"
        ))
    }
}

/// An address block (`10.0.0.0/8`, `fd00::/8`) or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4 address written as IPv6,
    /// `::ffff:10.1.2.3`, counts as the IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(block), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(block) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(block), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(block) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `ADDRESS` or `ADDRESS/PREFIX`, blanks around it ignored.
pub fn cidr(text: &str) -> Result<Cidr, String> {
    let text = text.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address or an address/prefix block"))?;
    let addr = addr.to_canonical();
    let most = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => most,
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= most)
            .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {most}"))?,
    };
    Ok(Cidr { addr, prefix })
}

/// The words a boolean setting takes, shown in `--help`: any case,
/// surrounding blanks ignored (also `y`/`n` and `t`/`f`, as clap's boolish
/// parser reads them).
pub const SWITCH_WORDS: [&str; 8] = ["on", "off", "true", "false", "yes", "no", "1", "0"];

/// The one parser of every boolean setting, of `serve` and of `agent`
/// (`BACKCHANNEL_ACCESS_LOG`, `BACKCHANNEL_ECHO`, ...): clap's
/// [`BoolishValueParser`] after trimming
/// blanks, listing [`SWITCH_WORDS`].
pub fn switch() -> Switch {
    Switch
}

/// See [`switch`].
#[derive(Debug, Clone, Copy)]
pub struct Switch;

impl TypedValueParser for Switch {
    type Value = bool;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        let trimmed = value.to_str().map(str::trim).map(std::ffi::OsStr::new);
        BoolishValueParser::new().parse_ref(command, arg, trimmed.unwrap_or(value))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(SWITCH_WORDS.into_iter().map(PossibleValue::new)))
    }
}

/// The longest duration any setting may name: far beyond any use, and well
/// within what PostgreSQL's intervals and timestamps, chrono's dates and the
/// runtime's clock hold (a longer one would only fail later, mid-statement).
pub const MAX_SECONDS: u64 = 100 * 365 * 86_400;

/// A setting that cannot work, found before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A number of seconds, fractions allowed, 0 or more. One too large for a
/// `Duration` becomes the largest, which `validate` refuses by name.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| "must be a number of seconds".to_string())?;
    if value.is_nan() || value < 0.0 {
        return Err("must be a number of seconds, 0 or more".into());
    }
    Ok(Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX))
}

/// A whole number of milliseconds.
fn millis(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "must be a whole number of milliseconds".to_string())
}

impl Settings {
    /// Settings with defaults for everything but the database and tokens.
    /// The defaults are those of the command line; the environment is ignored.
    pub fn new(database_url: &str, submitter_tokens: &[&str], listener_tokens: &[&str]) -> Self {
        let command = Settings::augment_args(clap::Command::new("serve"))
            .mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["serve", "--database-url", database_url])
            .expect("the defaults parse");
        let mut settings = Settings::from_arg_matches(&matches).expect("the defaults parse");
        settings.bind = "127.0.0.1:0".parse().expect("valid address");
        settings.submitter_tokens = submitter_tokens.iter().map(|t| t.to_string()).collect();
        settings.listener_tokens = listener_tokens.iter().map(|t| t.to_string()).collect();
        settings
    }

    /// Whether forwarding to the stream's holder is set up: a cluster secret
    /// and the peers it may go to (docs/scaling.md).
    pub fn forwarding(&self) -> bool {
        (self.cluster_secret.is_some() || self.cluster_secret_file.is_some())
            && !self.peers.is_empty()
    }

    /// Durations: those that must be positive are, and none is longer than
    /// [`MAX_SECONDS`].
    fn validate_durations(&self) -> Result<(), ConfigError> {
        let positive = [
            ("BACKCHANNEL_HEARTBEAT", self.heartbeat),
            ("BACKCHANNEL_DEFAULT_TIMEOUT", self.default_timeout),
            ("BACKCHANNEL_MAX_TIMEOUT", self.max_timeout),
            ("BACKCHANNEL_RETENTION", self.retention),
            ("BACKCHANNEL_REAPER_INTERVAL", self.reaper_interval),
            ("BACKCHANNEL_HEADER_TIMEOUT", self.header_timeout),
            ("BACKCHANNEL_BODY_TIMEOUT", self.body_timeout),
            ("BACKCHANNEL_RECHECK_INTERVAL", self.recheck_interval),
            ("BACKCHANNEL_FORWARD_TIMEOUT", self.forward_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(ConfigError(format!(
                    "{name} must be a positive number of seconds"
                )));
            }
        }
        let bounded = positive.into_iter().chain([
            ("BACKCHANNEL_SHUTDOWN_GRACE", self.shutdown_grace),
            ("BACKCHANNEL_POLL_INTERVAL_MS", self.poll_interval),
        ]);
        for (name, value) in bounded {
            if value.as_secs() > MAX_SECONDS {
                return Err(ConfigError(format!(
                    "{name} is too long: at most {MAX_SECONDS} seconds (100 years)"
                )));
            }
        }
        Ok(())
    }

    /// Refuse settings that cannot work, with a message naming the setting.
    /// (The tokens are checked where they are read: `http::auth::Tokens`.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_durations()?;
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
        if self.max_queued == 0 {
            return Err(ConfigError(
                "BACKCHANNEL_MAX_QUEUED must be at least 1".into(),
            ));
        }
        if self.max_body == 0 {
            return Err(ConfigError(
                "BACKCHANNEL_MAX_BODY must be at least 1".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError(
                "BACKCHANNEL_POLL_INTERVAL_MS must be at least 1".into(),
            ));
        }
        // The URLs are read (TLS parameters, certificate files) by `store::Target`.
        if let Some(value) = &self.synchronous_commit {
            if !["on", "off", "local", "remote_write", "remote_apply"].contains(&value.as_str()) {
                return Err(ConfigError(
                    "BACKCHANNEL_SYNCHRONOUS_COMMIT must be one of on, off, local, remote_write, remote_apply".into(),
                ));
            }
        }
        if !self.seal_signers.is_empty() && !self.require_sealed {
            return Err(ConfigError(
                "BACKCHANNEL_SEAL_SIGNERS needs BACKCHANNEL_REQUIRE_SEALED=on: signatures are checked by the seal gate".into(),
            ));
        }
        if self.cluster_secret.is_some() && self.cluster_secret_file.is_some() {
            return Err(ConfigError(
                "set BACKCHANNEL_CLUSTER_SECRET or BACKCHANNEL_CLUSTER_SECRET_FILE, not both"
                    .into(),
            ));
        }
        if let Some(secret) = &self.cluster_secret {
            check_cluster_secret(secret)?;
        }
        if let Some(url) = &self.advertise_url {
            advertised(url)?;
        }
        if self.synchronous_commit.is_some() && self.statements == StatementMode::Unnamed {
            return Err(ConfigError(
                "BACKCHANNEL_SYNCHRONOUS_COMMIT is a session setting, and with \
                 BACKCHANNEL_STATEMENTS=unnamed the pooled connections go through a transaction \
                 pooler, where a SET would reach other clients: set it on the role instead \
                 (ALTER ROLE ... SET synchronous_commit = ...)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The shortest cluster secret taken (bytes).
pub const MIN_CLUSTER_SECRET: usize = 32;

/// A cluster secret long enough to sign with.
pub fn check_cluster_secret(secret: &str) -> Result<(), ConfigError> {
    if secret.trim().len() < MIN_CLUSTER_SECRET {
        return Err(ConfigError(format!(
            "the cluster secret must be at least {MIN_CLUSTER_SECRET} bytes \
             (e.g. openssl rand -hex 32)"
        )));
    }
    Ok(())
}

/// An advertised URL: `http` or `https`, a host, a port or not, no path,
/// query, fragment or credentials. Returned without a trailing slash.
pub fn advertised(url: &str) -> Result<String, ConfigError> {
    let refuse = |why: &str| {
        ConfigError(format!(
            "BACKCHANNEL_ADVERTISE_URL {url:?} {why}: write it as http://ADDRESS:PORT or \
             https://NAME:PORT"
        ))
    };
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| refuse("is not an http or https URL"))?;
    if rest.is_empty() {
        return Err(refuse("names no host"));
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(refuse("has a path, a query, credentials or a blank"));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_blocks_or_names() {
        let block = peer("10.0.0.0/8").unwrap();
        assert!(block.allows("10.1.2.3"));
        assert!(!block.allows("11.1.2.3"));
        assert!(!block.allows("ten.example"), "a name is never resolved");
        let v6 = peer("fd00::/8").unwrap();
        assert!(v6.allows("[fd00::1]"));
        let name = peer(" Broker-2.internal ").unwrap();
        assert!(name.allows("broker-2.INTERNAL"));
        assert!(!name.allows("broker-2.internal.evil.example"));
        assert!(!name.allows("10.1.2.3"));
        assert!(peer("").is_err());
        assert!(peer("a b").is_err());
        assert!(peer("http://x").is_err());
    }

    #[test]
    fn advertised_urls_are_origins() {
        assert_eq!(
            advertised("http://10.0.0.5:8080/").unwrap(),
            "http://10.0.0.5:8080"
        );
        assert!(advertised("https://broker-2.internal:8443").is_ok());
        assert!(advertised("10.0.0.5:8080").is_err());
        assert!(advertised("http://10.0.0.5:8080/v1").is_err());
        assert!(advertised("http://user:pw@10.0.0.5").is_err());
        assert!(advertised("http://").is_err());
        let mut s = valid();
        s.cluster_secret = Some("short".into());
        assert!(s.validate().unwrap_err().to_string().contains("32 bytes"));
        s.cluster_secret = Some("x".repeat(32));
        assert!(s.validate().is_ok());
        s.cluster_secret_file = Some("secret".into());
        assert!(s.validate().is_err());
    }

    fn valid() -> Settings {
        Settings::new(
            "postgres://postgres@127.0.0.1/db",
            &["submitter-token-0123456789"],
            &["listener-token-0123456789"],
        )
    }

    #[test]
    fn valid_settings_pass_with_the_command_line_defaults() {
        let s = valid();
        s.validate().unwrap();
        assert_eq!(s.heartbeat, Duration::from_secs(15));
        assert_eq!(s.max_timeout, Duration::from_secs(3600));
        assert_eq!(s.poll_interval, Duration::from_millis(100));
        assert_eq!(s.pool_size, 16);
    }

    #[test]
    fn refusals_name_the_setting() {
        let mut s = valid();
        s.synchronous_commit = Some("sometimes".into());
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_SYNCHRONOUS_COMMIT")
        );

        let mut s = valid();
        s.retention = Duration::from_secs(MAX_SECONDS + 1);
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_RETENTION")
        );

        let mut s = valid();
        s.heartbeat = Duration::ZERO;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_HEARTBEAT")
        );

        let mut s = valid();
        s.seal_signers = vec!["scheduler.pub".into()];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("BACKCHANNEL_SEAL_SIGNERS needs BACKCHANNEL_REQUIRE_SEALED")
        );
        s.require_sealed = true;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn address_blocks_hold_their_addresses() {
        let block = cidr("10.0.0.0/8").unwrap();
        assert!(block.contains("10.200.3.4".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!block.contains("11.0.0.1".parse().unwrap()));
        let one = cidr(" 127.0.0.1 ").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = cidr("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(
            cidr("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("proxy.example").is_err());
    }

    #[test]
    fn seconds_take_fractions_and_refuse_nonsense() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(seconds("-1").is_err());
        assert!(seconds("NaN").is_err());
        assert!(seconds("inf").is_ok_and(|d| d == Duration::MAX));
        assert_eq!(seconds("1e300"), Ok(Duration::MAX));
        assert!(seconds("soon").is_err());
    }
}
