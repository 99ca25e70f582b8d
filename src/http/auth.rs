//! Bearer tokens of the two roles: where they come from (the variables and
//! the token files), the rules they must follow, the check of each request,
//! in constant time, and the set in force, which SIGHUP replaces by reading
//! the token files again. Tokens are never logged.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode, header};

use super::error::ApiError;
use crate::config::{ConfigError, Settings};
use crate::telemetry::metrics::{Metrics, ResultLabel};

/// Shortest token accepted: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Submitter,
    Listener,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Listener => "listener",
        }
    }
}

/// The configured tokens, kept as SHA-256 digests: comparing digests of equal
/// length in constant time reveals neither the tokens nor their lengths.
pub struct Tokens {
    tokens: Vec<([u8; 32], Role)>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// The tokens of `settings`: the lists plus the token files. A file that
    /// cannot be read, holds no token, or holds a token shorter than
    /// [`MIN_TOKEN_LEN`] or with spaces in it is refused, and so is a token
    /// configured for both roles; the message names the variable, the file
    /// and the line, never the token.
    pub fn load(settings: &Settings) -> Result<Tokens, ConfigError> {
        let mut submitter = settings.submitter_tokens.clone();
        let mut listener = settings.listener_tokens.clone();
        let files = [
            (
                "BACKCHANNEL_SUBMITTER_TOKENS_FILE",
                &settings.submitter_tokens_file,
                &mut submitter,
            ),
            (
                "BACKCHANNEL_LISTENER_TOKENS_FILE",
                &settings.listener_tokens_file,
                &mut listener,
            ),
        ];
        for (name, file, tokens) in files {
            if let Some(path) = file {
                tokens.extend(read_token_file(name, path)?);
            }
        }
        check_tokens("submitter", "BACKCHANNEL_SUBMITTER_TOKENS", &submitter)?;
        check_tokens("listener", "BACKCHANNEL_LISTENER_TOKENS", &listener)?;
        if submitter.iter().any(|t| listener.iter().any(|l| l == t)) {
            return Err(ConfigError(
                "the same token is configured for both roles (BACKCHANNEL_SUBMITTER_TOKENS and BACKCHANNEL_LISTENER_TOKENS, or their _FILE): submitter and listener tokens must differ".into(),
            ));
        }
        Ok(Tokens::new(&submitter, &listener))
    }

    pub fn new(submitter: &[String], listener: &[String]) -> Tokens {
        let tokens = submitter
            .iter()
            .map(|t| (digest(t.as_bytes()), Role::Submitter))
            .chain(
                listener
                    .iter()
                    .map(|t| (digest(t.as_bytes()), Role::Listener)),
            )
            .collect();
        Tokens { tokens }
    }

    /// The role of a presented token; every configured token is compared.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        self.role_of_digest(&digest(presented))
    }

    fn role_of_digest(&self, presented: &[u8; 32]) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.tokens {
            if bool::from(token.ct_eq(presented)) {
                found = Some(*role);
            }
        }
        found
    }

    /// How many tokens each role has (submitter, listener).
    pub fn counts(&self) -> (usize, usize) {
        let submitters = self
            .tokens
            .iter()
            .filter(|(_, role)| *role == Role::Submitter)
            .count();
        (submitters, self.tokens.len() - submitters)
    }

    /// Check the request's bearer token against `required`.
    pub fn check(&self, headers: &HeaderMap, required: Role) -> Result<(), ApiError> {
        self.authorize(headers, required).map(|_| ())
    }

    /// Check the request's bearer token against `required`; the digest of the
    /// token on success.
    fn authorize(&self, headers: &HeaderMap, required: Role) -> Result<[u8; 32], ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        let Some(presented) = presented else {
            return Err(unauthorized("a bearer token is required"));
        };
        let presented = digest(presented);
        match self.role_of_digest(&presented) {
            None => Err(unauthorized("the bearer token is not valid")),
            Some(role) if role == required => Ok(presented),
            Some(role) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "a {} token cannot use this endpoint; it needs a {} token",
                    role.name(),
                    required.name()
                ),
            )),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn unauthorized(message: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
    e.bearer_challenge = true;
    e
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

/// The token set in force. Every request is checked against the current set;
/// [`reload`](LiveTokens::reload) replaces it (on SIGHUP), and a stream ends
/// when the token it was opened with is no longer in it ([`Grant::revoked`]).
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

    /// Read the token files again, with the same rules as at start-up. A set
    /// that breaks a rule is not applied: the tokens in force stay, and the
    /// log says why (naming the variable, file and line, never a token).
    pub fn reload(&self, settings: &Settings, metrics: &Metrics) -> Result<(), ConfigError> {
        let result = Tokens::load(settings);
        let label = |result| ResultLabel { result };
        match &result {
            Ok(tokens) => {
                let (submitters, listeners) = tokens.counts();
                tracing::info!(
                    submitter_tokens = submitters,
                    listener_tokens = listeners,
                    "tokens reloaded"
                );
                metrics
                    .http
                    .token_reloads
                    .get_or_create(&label("applied"))
                    .inc();
            }
            Err(error) => {
                tracing::error!(%error, "tokens not reloaded; the tokens in force stay");
                metrics
                    .http
                    .token_reloads
                    .get_or_create(&label("refused"))
                    .inc();
            }
        }
        let tokens = result?;
        self.0.send_replace(Arc::new(tokens));
        Ok(())
    }

    /// Reload on every SIGHUP until `shutdown`. The handler is installed
    /// here, before the returned future runs: a SIGHUP that arrives as soon as
    /// the instance answers must not end the process (SIGHUP's default).
    pub fn reload_on_hangup(
        self,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
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
            self.reload_loop(&mut hangup, &settings, &metrics, &shutdown)
                .await;
        }
    }

    async fn reload_loop(
        &self,
        hangup: &mut tokio::signal::unix::Signal,
        settings: &Settings,
        metrics: &Metrics,
        shutdown: &CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reading the token files again");
                    let _ = self.reload(settings, metrics);
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// A request's token, accepted for a role: kept by the stream, which ends
/// when the token is no longer valid for that role.
pub struct Grant {
    digest: [u8; 32],
    role: Role,
    tokens: watch::Receiver<Arc<Tokens>>,
}

impl Grant {
    /// Resolves once a reload took the token away (or gave it the other role).
    pub async fn revoked(mut self) {
        loop {
            if self.tokens.changed().await.is_err() {
                // No more reloads can happen.
                return std::future::pending().await;
            }
            let role = self.tokens.borrow_and_update().role_of_digest(&self.digest);
            if role != Some(self.role) {
                return;
            }
        }
    }
}

/// A filter that passes requests carrying a token of `role`.
pub fn require(
    tokens: LiveTokens,
    role: Role,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let result = tokens
                .current()
                .check(&headers, role)
                .map_err(warp::reject::custom);
            std::future::ready(result)
        })
        .untuple_one()
}

/// Like [`require`], keeping the accepted token as a [`Grant`].
pub fn grant(
    tokens: LiveTokens,
    role: Role,
) -> impl Filter<Extract = (Grant,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned().and_then(move |headers: HeaderMap| {
        let mut receiver = tokens.0.subscribe();
        let checked = receiver.borrow_and_update().authorize(&headers, role);
        let result = checked
            .map(|digest| Grant {
                digest,
                role,
                tokens: receiver,
            })
            .map_err(warp::reject::custom);
        std::future::ready(result)
    })
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
    fn refusals_name_the_setting_and_never_the_token() {
        let load = |s: &Settings| Tokens::load(s).err().expect("refused").to_string();
        let mut s = valid();
        s.listener_tokens = vec!["qwe9xk".into()];
        let e = load(&s);
        assert!(
            e.contains("BACKCHANNEL_LISTENER_TOKENS") && !e.contains("qwe9xk"),
            "{e}"
        );

        let mut s = valid();
        s.listener_tokens = s.submitter_tokens.clone();
        let e = load(&s);
        assert!(
            e.contains("both roles") && !e.contains("submitter-token-0123456789"),
            "{e}"
        );

        let mut s = valid();
        s.submitter_tokens = vec![];
        assert!(load(&s).contains("BACKCHANNEL_SUBMITTER_TOKENS"));
    }

    #[test]
    fn each_token_has_its_role() {
        let tokens = Tokens::load(&valid()).unwrap();
        assert_eq!(
            tokens.role_of(b"submitter-token-0123456789"),
            Some(Role::Submitter)
        );
        assert_eq!(
            tokens.role_of(b"listener-token-0123456789"),
            Some(Role::Listener)
        );
        assert_eq!(tokens.role_of(b"listener-token-012345678"), None);
    }
}
