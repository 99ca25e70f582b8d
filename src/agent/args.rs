//! The agent's command line, and the checked configuration built from it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

use super::AgentError;
use crate::job::{DEFAULT_CHANNEL_NAME, is_channel_name};

/// A secret string: never shown by `Debug`, so it cannot reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `backchannel agent`: hold the stream, forward each job to an internal HTTP
/// endpoint, post the answer back, reconnect by itself.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The broker's base URL (http:// or https://, a path prefix is kept).
    #[arg(long, env = "BACKCHANNEL_SERVER")]
    pub server: String,

    /// The listener token. Prefer --token-file: a flag shows in process lists.
    #[arg(long, env = "BACKCHANNEL_LISTENER_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,

    /// A file holding the listener token (surrounding whitespace is ignored).
    #[arg(long, env = "BACKCHANNEL_LISTENER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The deprecated name of BACKCHANNEL_LISTENER_TOKEN, used when neither
    /// new variable (nor flag) is set.
    #[arg(
        long = "deprecated-token",
        env = "BACKCHANNEL_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub deprecated_token: Option<Secret>,

    /// The deprecated name of BACKCHANNEL_LISTENER_TOKEN_FILE.
    #[arg(
        long = "deprecated-token-file",
        env = "BACKCHANNEL_TOKEN_FILE",
        hide = true
    )]
    pub deprecated_token_file: Option<PathBuf>,

    /// Serve /healthz, /readyz (200 only while the stream is held) and
    /// /metrics on this address, e.g. 127.0.0.1:9464 (default: off).
    #[arg(long, env = "BACKCHANNEL_HEALTH_BIND")]
    pub health_bind: Option<SocketAddr>,

    /// The internal endpoint each job's payload is POSTed to.
    #[arg(long, env = "BACKCHANNEL_FORWARD")]
    pub forward: Option<String>,

    /// Answer every job with its own payload instead of forwarding it.
    #[arg(long, env = "BACKCHANNEL_ECHO", value_parser = crate::config::switch())]
    pub echo: bool,

    /// The header that carries the shared secret on every forwarded request
    /// (used with --forward-header-file).
    #[arg(long, env = "BACKCHANNEL_FORWARD_HEADER", default_value = DEFAULT_FORWARD_HEADER)]
    pub forward_header: String,

    /// A file holding the shared secret sent to the handler in
    /// --forward-header, so that the handler can refuse anyone else
    /// (surrounding whitespace is ignored; the value is never logged).
    #[arg(long, env = "BACKCHANNEL_FORWARD_HEADER_FILE")]
    pub forward_header_file: Option<PathBuf>,

    /// The forward URL is the castellum kit (the Python client's handler view):
    /// an answer without its `X-Backchannel-Kit` header fails the job with
    /// `not_the_kit` (a wrong path), and a missing shared secret is warned
    /// about at start. Off for any other handler.
    #[arg(long, env = "BACKCHANNEL_EXPECT_KIT", value_parser = crate::config::switch())]
    pub expect_kit: bool,

    /// Seconds the handler may fail to accept connections (while jobs arrive)
    /// before /readyz answers 503 `handler_unreachable`.
    #[arg(long, env = "BACKCHANNEL_HANDLER_DOWN_AFTER", default_value_t = 15.0)]
    pub handler_down_after: f64,

    /// Sent as X-Listener-Id, so that a restarted agent takes over its own stale
    /// stream (default: stable per host, derived from the host name).
    #[arg(long, env = "BACKCHANNEL_LISTENER_ID")]
    pub listener_id: Option<String>,

    /// The channel whose stream to hold (its listener token must be that
    /// channel's); sealed jobs must name it in their header's `ch`.
    #[arg(long, env = "BACKCHANNEL_CHANNEL", default_value = "default")]
    pub channel: String,

    /// Jobs handled at the same time.
    #[arg(long, env = "BACKCHANNEL_CONCURRENCY", default_value_t = 16)]
    pub concurrency: usize,

    /// The broker's heartbeat in seconds: a stream silent for three is dead.
    #[arg(long, env = "BACKCHANNEL_HEARTBEAT", default_value_t = 15.0)]
    pub heartbeat: f64,

    /// Seconds to finish the jobs in flight after SIGTERM before giving them up.
    #[arg(long, env = "BACKCHANNEL_SHUTDOWN_GRACE", default_value_t = 10.0)]
    pub shutdown_grace: f64,

    /// An X25519 private key (PEM, `openssl genpkey -algorithm X25519`) that
    /// opens sealed jobs (docs/sealed.md), or a directory of them (`*.key`).
    /// Repeat it (or separate paths by commas in the variable) to hold the
    /// old and the new key during a rotation. Read again on SIGHUP. Needs
    /// --trust-signer.
    #[arg(
        long = "open-with",
        env = "BACKCHANNEL_OPEN_WITH",
        value_delimiter = ','
    )]
    pub open_with: Vec<PathBuf>,

    /// An Ed25519 public key (PEM) of a scheduler whose sealed jobs are
    /// trusted, or a directory of them (`*.pub`). Repeatable (commas in the
    /// variable). Read again on SIGHUP. Needs --open-with.
    #[arg(
        long = "trust-signer",
        env = "BACKCHANNEL_TRUST_SIGNER",
        value_delimiter = ','
    )]
    pub trust_signer: Vec<PathBuf>,

    /// Refuse every job whose payload is not sealed (`seal_required`); the
    /// handler then only ever sees opened, authenticated payloads.
    #[arg(long, env = "BACKCHANNEL_REQUIRE_SEALED", value_parser = crate::config::switch())]
    pub require_sealed: bool,
}

impl AgentArgs {
    /// Arguments with defaults for everything but the broker and the token.
    /// Set `forward` or `echo` before use.
    pub fn new(server: &str, token: &str) -> AgentArgs {
        AgentArgs {
            server: server.to_owned(),
            token: Some(token.into()),
            token_file: None,
            deprecated_token: None,
            deprecated_token_file: None,
            health_bind: None,
            forward: None,
            echo: false,
            forward_header: DEFAULT_FORWARD_HEADER.into(),
            forward_header_file: None,
            expect_kit: false,
            handler_down_after: 15.0,
            listener_id: None,
            channel: DEFAULT_CHANNEL_NAME.into(),
            concurrency: 16,
            heartbeat: 15.0,
            shutdown_grace: 10.0,
            open_with: Vec::new(),
            trust_signer: Vec::new(),
            require_sealed: false,
        }
    }
}

/// The header of the shared secret when none is named.
pub const DEFAULT_FORWARD_HEADER: &str = "X-Backchannel-Secret";

/// Where answers come from.
#[derive(Debug, Clone)]
pub enum Target {
    /// POST the payload to this URL, with the shared secret header if set.
    Forward(Url, Option<(HeaderName, Secret)>),
    /// Answer with the payload itself.
    Echo,
}

/// The agent's settings, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The broker's base URL, ending in `/`.
    pub server: Url,
    pub token: Secret,
    pub target: Target,
    pub listener_id: String,
    /// The channel whose stream the agent holds.
    pub channel: String,
    pub concurrency: usize,
    pub heartbeat: Duration,
    pub shutdown_grace: Duration,
    pub health_bind: Option<SocketAddr>,
    /// The handler is the castellum kit: answers without its header fail.
    pub expect_kit: bool,
    /// How long the handler may refuse connections before /readyz says so.
    pub handler_down_after: Duration,
    /// The token came from BACKCHANNEL_TOKEN or BACKCHANNEL_TOKEN_FILE.
    pub deprecated_token_variable: bool,
    /// Sealed jobs: the key files (read at start and on SIGHUP), or none.
    pub sealing: Option<Sealing>,
}

/// Where the agent's sealed/v1 keys come from (`--open-with`,
/// `--trust-signer`, `--require-sealed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealing {
    pub open_with: Vec<PathBuf>,
    pub trust_signers: Vec<PathBuf>,
    pub require_sealed: bool,
}

/// The most jobs handled at once.
const MAX_CONCURRENCY: usize = 10_000;
/// Longest listener id the broker accepts.
const MAX_LISTENER_ID: usize = 200;

impl Config {
    /// Check `args`; every refusal names the setting, never a secret.
    pub fn from_args(args: AgentArgs) -> Result<Config, AgentError> {
        let server = server_url(&args.server)?;
        let deprecated = args.token.is_none() && args.token_file.is_none();
        let (token, deprecated_token_variable) = if deprecated {
            let names = ("BACKCHANNEL_TOKEN", "BACKCHANNEL_TOKEN_FILE");
            let given = args.deprecated_token.is_some() || args.deprecated_token_file.is_some();
            let token = listener_token(args.deprecated_token, args.deprecated_token_file, names)?;
            (token, given)
        } else {
            let names = (
                "BACKCHANNEL_LISTENER_TOKEN",
                "BACKCHANNEL_LISTENER_TOKEN_FILE",
            );
            (listener_token(args.token, args.token_file, names)?, false)
        };
        let target = target(
            args.forward,
            args.echo,
            &args.forward_header,
            args.forward_header_file.as_deref(),
        )?;
        if args.expect_kit && matches!(target, Target::Echo) {
            return Err(bad(
                "BACKCHANNEL_EXPECT_KIT needs BACKCHANNEL_FORWARD: an echoing agent forwards nothing"
                    .into(),
            ));
        }
        let listener_id = listener_id(args.listener_id)?;
        if !is_channel_name(&args.channel) {
            return Err(bad(format!(
                "BACKCHANNEL_CHANNEL {:?} is not a channel name (lowercase letters, digits and \
                 inner hyphens, 1 to 63 characters)",
                args.channel
            )));
        }
        check_numbers(args.concurrency, args.heartbeat, args.shutdown_grace)?;
        if !(args.handler_down_after.is_finite() && args.handler_down_after > 0.0) {
            return Err(bad(
                "BACKCHANNEL_HANDLER_DOWN_AFTER must be a positive number of seconds".into(),
            ));
        }
        let sealing = sealing(args.open_with, args.trust_signer, args.require_sealed)?;
        Ok(Config {
            server,
            token,
            target,
            listener_id,
            channel: args.channel,
            concurrency: args.concurrency,
            heartbeat: Duration::from_secs_f64(args.heartbeat),
            shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
            health_bind: args.health_bind,
            expect_kit: args.expect_kit,
            handler_down_after: Duration::from_secs_f64(args.handler_down_after),
            deprecated_token_variable,
            sealing,
        })
    }

    /// A path under the broker's base URL (`v1/stream`, `v1/jobs/1/result`).
    pub fn endpoint(&self, path: &str) -> Url {
        self.server
            .join(path)
            .expect("a relative path joins onto an http URL")
    }

    /// The stream of the agent's channel: `v1/stream` for the default
    /// channel (as every release answers it), else `v1/channels/NAME/stream`.
    pub fn stream_endpoint(&self) -> Url {
        if self.channel == DEFAULT_CHANNEL_NAME {
            self.endpoint("v1/stream")
        } else {
            self.endpoint(&format!("v1/channels/{}/stream", self.channel))
        }
    }

    /// How long a stream may stay without a single byte before it counts as dead.
    pub fn silence(&self) -> Duration {
        self.heartbeat * 3
    }
}

fn bad(message: String) -> AgentError {
    AgentError::Config(message)
}

/// The broker's base URL, ending in `/` (so that a path prefix is kept).
fn server_url(text: &str) -> Result<Url, AgentError> {
    let mut server = http_url("BACKCHANNEL_SERVER", text)?;
    if !server.path().ends_with('/') {
        let path = format!("{}/", server.path());
        server.set_path(&path);
    }
    Ok(server)
}

/// The listener token, given once: as a value or in a file (`names`: the
/// variables of the two, for the messages).
fn listener_token(
    token: Option<Secret>,
    file: Option<PathBuf>,
    names: (&str, &str),
) -> Result<Secret, AgentError> {
    let token = match (token, file) {
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "give the token once: {} or {}, not both",
                names.0, names.1
            )));
        }
        (Some(token), None) => token,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad(format!("{}: cannot read {}: {e}", names.1, path.display())))?;
            Secret(text.trim().to_owned())
        }
        (None, None) => {
            return Err(bad(
                "a listener token is required: BACKCHANNEL_LISTENER_TOKEN or BACKCHANNEL_LISTENER_TOKEN_FILE"
                    .into(),
            ));
        }
    };
    if token.expose().trim().is_empty() || token.expose().trim() != token.expose() {
        return Err(bad(
            "the listener token is empty or has surrounding spaces".into()
        ));
    }
    Ok(token)
}

/// Where answers come from: exactly one of forward and echo.
fn target(
    forward: Option<String>,
    echo: bool,
    header: &str,
    header_file: Option<&Path>,
) -> Result<Target, AgentError> {
    match (forward, echo) {
        (Some(_), true) => Err(bad(
            "BACKCHANNEL_FORWARD and BACKCHANNEL_ECHO exclude each other".into(),
        )),
        (Some(url), false) => Ok(Target::Forward(
            http_url("BACKCHANNEL_FORWARD", &url)?,
            forward_secret(header, header_file)?,
        )),
        (None, true) if header_file.is_some() => Err(bad(
            "BACKCHANNEL_FORWARD_HEADER_FILE needs BACKCHANNEL_FORWARD: an echoing agent forwards nothing".into(),
        )),
        (None, true) => Ok(Target::Echo),
        (None, false) => Err(bad(
            "say where jobs go: BACKCHANNEL_FORWARD=<url>, or BACKCHANNEL_ECHO=true".into(),
        )),
    }
}

/// Sealing is on with both kinds of key, off with neither. One kind alone
/// would refuse every sealed job (no signer: `seal_bad_signature`; no
/// recipient key: `seal_unknown_key`), and `--require-sealed` without keys
/// every job: refused at start instead.
fn sealing(
    open_with: Vec<PathBuf>,
    trust_signers: Vec<PathBuf>,
    require_sealed: bool,
) -> Result<Option<Sealing>, AgentError> {
    match (open_with.is_empty(), trust_signers.is_empty()) {
        (true, true) if require_sealed => Err(bad(
            "BACKCHANNEL_REQUIRE_SEALED needs keys: BACKCHANNEL_OPEN_WITH (--open-with) and BACKCHANNEL_TRUST_SIGNER (--trust-signer)".into(),
        )),
        (true, true) => Ok(None),
        (false, true) => Err(bad(
            "BACKCHANNEL_OPEN_WITH needs BACKCHANNEL_TRUST_SIGNER (--trust-signer): without a trusted signer every sealed job is refused".into(),
        )),
        (true, false) => Err(bad(
            "BACKCHANNEL_TRUST_SIGNER needs BACKCHANNEL_OPEN_WITH (--open-with): without a recipient key no sealed job opens".into(),
        )),
        (false, false) => Ok(Some(Sealing {
            open_with,
            trust_signers,
            require_sealed,
        })),
    }
}

/// The listener id given, or the host's default; 1 to 200 printable characters.
fn listener_id(given: Option<String>) -> Result<String, AgentError> {
    let listener_id = given.unwrap_or_else(default_listener_id);
    let listener_id = listener_id.trim().to_owned();
    if listener_id.is_empty()
        || listener_id.chars().count() > MAX_LISTENER_ID
        || listener_id.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "BACKCHANNEL_LISTENER_ID must be 1 to {MAX_LISTENER_ID} printable characters"
        )));
    }
    Ok(listener_id)
}

fn check_numbers(
    concurrency: usize,
    heartbeat: f64,
    shutdown_grace: f64,
) -> Result<(), AgentError> {
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(bad(format!(
            "BACKCHANNEL_CONCURRENCY must be 1 to {MAX_CONCURRENCY}"
        )));
    }
    if !(heartbeat.is_finite() && heartbeat > 0.0) {
        return Err(bad(
            "BACKCHANNEL_HEARTBEAT must be a positive number of seconds".into(),
        ));
    }
    if !(shutdown_grace.is_finite() && shutdown_grace >= 0.0) {
        return Err(bad(
            "BACKCHANNEL_SHUTDOWN_GRACE must be a number of seconds, 0 or more".into(),
        ));
    }
    Ok(())
}

/// The shared secret for the handler: a valid header name and the value read
/// from `file`. Messages name the variable and the file, never the value.
fn forward_secret(
    name: &str,
    file: Option<&Path>,
) -> Result<Option<(HeaderName, Secret)>, AgentError> {
    let Some(path) = file else {
        return Ok(None);
    };
    let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        bad(format!(
            "BACKCHANNEL_FORWARD_HEADER is not a valid header name: {name:?}"
        ))
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "BACKCHANNEL_FORWARD_HEADER_FILE: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let value = text.trim();
    if value.is_empty() || HeaderValue::from_str(value).is_err() || value.contains(['\r', '\n']) {
        return Err(bad(format!(
            "BACKCHANNEL_FORWARD_HEADER_FILE: {} must hold one line of printable characters",
            path.display()
        )));
    }
    Ok(Some((header, Secret(value.to_owned()))))
}

fn http_url(name: &str, text: &str) -> Result<Url, AgentError> {
    let url = Url::parse(text.trim())
        .map_err(|e| AgentError::Config(format!("{name} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(AgentError::Config(format!(
            "{name} must be an http:// or https:// URL"
        )));
    }
    Ok(url)
}

/// Stable per host, so that a restarted agent takes over its own stale stream.
pub fn default_listener_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let id = format!("backchannel-agent@{host}");
    id.chars().take(MAX_LISTENER_ID).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        let mut args = AgentArgs::new("http://broker.example/prefix", "a-listener-token-123");
        args.echo = true;
        args
    }

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let config = Config::from_args(args()).unwrap();
        assert_eq!(
            config.endpoint("v1/stream").as_str(),
            "http://broker.example/prefix/v1/stream"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let config = Config::from_args(args()).unwrap();
        assert!(!format!("{config:?} {:?}", args()).contains("a-listener-token-123"));
    }

    #[test]
    fn the_token_comes_from_a_file() {
        let path = std::env::temp_dir().join(format!("bc-token-{}", std::process::id()));
        std::fs::write(&path, "from-a-file-token-1\n").unwrap();
        let mut a = args();
        a.token = None;
        a.token_file = Some(path.clone());
        let config = Config::from_args(a).unwrap();
        std::fs::remove_file(path).unwrap();
        assert_eq!(config.token.expose(), "from-a-file-token-1");
    }

    #[test]
    fn the_deprecated_variables_still_work_and_the_new_ones_win() {
        let mut a = args();
        a.token = None;
        a.deprecated_token = Some("the-old-variable-token".into());
        let config = Config::from_args(a.clone()).unwrap();
        assert_eq!(config.token.expose(), "the-old-variable-token");
        assert!(config.deprecated_token_variable);

        a.token = Some("the-new-variable-token".into());
        let config = Config::from_args(a).unwrap();
        assert_eq!(config.token.expose(), "the-new-variable-token");
        assert!(!config.deprecated_token_variable);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let mut a = args();
        a.forward = Some("http://handler.internal/jobs".into());
        assert!(Config::from_args(a).is_err(), "forward and echo");
        let mut a = args();
        a.echo = false;
        assert!(Config::from_args(a).is_err(), "neither forward nor echo");
        let mut a = args();
        a.token = None;
        assert!(Config::from_args(a).is_err(), "no token");
        let mut a = args();
        a.server = "ftp://broker.example".into();
        assert!(Config::from_args(a).is_err(), "not http");
        let mut a = args();
        a.concurrency = 0;
        assert!(Config::from_args(a).is_err(), "no concurrency");
        let mut a = args();
        a.heartbeat = 0.0;
        assert!(Config::from_args(a).is_err(), "no heartbeat");
        let mut a = args();
        a.expect_kit = true;
        assert!(Config::from_args(a).is_err(), "the kit behind an echo");
        let mut a = args();
        a.handler_down_after = f64::NAN;
        assert!(Config::from_args(a).is_err(), "no handler delay");
    }

    #[test]
    fn the_forward_secret_comes_from_a_file_and_never_shows() {
        let path = std::env::temp_dir().join(format!("bc-secret-{}", std::process::id()));
        std::fs::write(&path, "  shared-secret-value-42 \n").unwrap();
        let mut a = args();
        a.echo = false;
        a.forward = Some("http://handler.internal/jobs".into());
        a.forward_header = "X-Castellum-Key".into();
        a.forward_header_file = Some(path.clone());
        let config = Config::from_args(a.clone()).unwrap();
        let Target::Forward(_, Some((name, value))) = &config.target else {
            panic!("a secret header is configured")
        };
        assert_eq!(name.as_str(), "x-castellum-key");
        assert_eq!(value.expose(), "shared-secret-value-42");
        assert!(!format!("{config:?}").contains("shared-secret-value-42"));

        a.forward_header = "not a header".into();
        assert!(Config::from_args(a.clone()).is_err(), "bad header name");
        a.forward_header = "X-Ok".into();
        std::fs::write(&path, "\n").unwrap();
        assert!(Config::from_args(a.clone()).is_err(), "empty secret");
        std::fs::remove_file(&path).unwrap();
        assert!(Config::from_args(a).is_err(), "missing file");
    }

    #[test]
    fn sealing_takes_both_kinds_of_key_or_neither() {
        let config = Config::from_args(args()).unwrap();
        assert_eq!(config.sealing, None, "off by default");
        let with = |open: &[&str], trust: &[&str], required: bool| {
            let mut a = args();
            a.open_with = open.iter().map(PathBuf::from).collect();
            a.trust_signer = trust.iter().map(PathBuf::from).collect();
            a.require_sealed = required;
            Config::from_args(a).map(|c| c.sealing)
        };
        let sealing = with(&["a.key", "b.key"], &["s.pub"], true)
            .unwrap()
            .unwrap();
        assert_eq!(sealing.open_with.len(), 2);
        assert!(sealing.require_sealed);
        for (open, trust, required, named) in [
            (&["a.key"][..], &[][..], false, "BACKCHANNEL_TRUST_SIGNER"),
            (&[][..], &["s.pub"][..], false, "BACKCHANNEL_OPEN_WITH"),
            (
                &[][..],
                &[][..],
                true,
                "BACKCHANNEL_REQUIRE_SEALED needs keys",
            ),
        ] {
            let error = with(open, trust, required).unwrap_err().to_string();
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn the_default_listener_id_is_stable() {
        assert_eq!(default_listener_id(), default_listener_id());
        assert!(default_listener_id().starts_with("backchannel-agent@"));
    }
}
