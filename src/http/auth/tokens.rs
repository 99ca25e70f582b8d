//! The configured tokens: where they come from (the variables and the token
//! files), the rules they must follow, and the check of a request's bearer
//! token against them, in constant time. Tokens are never logged.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, StatusCode, header};

use super::Role;
use crate::config::{ConfigError, Settings};
use crate::http::error::ApiError;

/// Shortest token accepted: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

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

    pub(super) fn role_of_digest(&self, presented: &[u8; 32]) -> Option<Role> {
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
    pub(super) fn authorize(
        &self,
        headers: &HeaderMap,
        required: Role,
    ) -> Result<[u8; 32], ApiError> {
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
