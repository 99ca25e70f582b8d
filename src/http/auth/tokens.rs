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
    /// configured for two roles; the message names the variable, the file
    /// and the line, never the token. Submitter and listener tokens are
    /// required; monitor tokens are optional (a named file must hold one).
    pub fn load(settings: &Settings) -> Result<Tokens, ConfigError> {
        let mut submitter = settings.submitter_tokens.clone();
        let mut listener = settings.listener_tokens.clone();
        let mut monitor = settings.monitor_tokens.clone();
        let files = [
            (
                Role::Submitter,
                &settings.submitter_tokens_file,
                &mut submitter,
            ),
            (
                Role::Listener,
                &settings.listener_tokens_file,
                &mut listener,
            ),
            (Role::Monitor, &settings.monitor_tokens_file, &mut monitor),
        ];
        for (role, file, tokens) in files {
            if let Some(path) = file {
                tokens.extend(read_token_file(&role.file_variable(), path)?);
            }
        }
        if monitor.iter().all(|t| t.trim().is_empty()) {
            monitor.clear();
        } else {
            check_tokens(Role::Monitor, &monitor)?;
        }
        check_tokens(Role::Submitter, &submitter)?;
        check_tokens(Role::Listener, &listener)?;
        let lists = [
            (Role::Submitter, &submitter),
            (Role::Listener, &listener),
            (Role::Monitor, &monitor),
        ];
        for (i, (one, these)) in lists.iter().enumerate() {
            for (other, those) in &lists[i + 1..] {
                if these.iter().any(|t| those.contains(t)) {
                    return Err(ConfigError(format!(
                        "the same token is configured for both roles {} and {} ({} and {}, \
                         or their _FILE): a token belongs to one role",
                        one.name(),
                        other.name(),
                        one.variable(),
                        other.variable()
                    )));
                }
            }
        }
        Ok(Tokens::with_roles(&[
            (Role::Submitter, &submitter),
            (Role::Listener, &listener),
            (Role::Monitor, &monitor),
        ]))
    }

    pub fn new(submitter: &[String], listener: &[String]) -> Tokens {
        Tokens::with_roles(&[(Role::Submitter, submitter), (Role::Listener, listener)])
    }

    /// The tokens of each role.
    pub fn with_roles(roles: &[(Role, &[String])]) -> Tokens {
        let tokens = roles
            .iter()
            .flat_map(|(role, tokens)| tokens.iter().map(|t| (digest(t.as_bytes()), *role)))
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

    /// How many tokens `role` has.
    pub fn count(&self, role: Role) -> usize {
        self.tokens.iter().filter(|(_, r)| *r == role).count()
    }

    /// The ids of `role`'s tokens ([`TokenId`]), in the order configured.
    pub fn ids(&self, role: Role) -> Vec<TokenId> {
        self.tokens
            .iter()
            .filter(|(_, r)| *r == role)
            .map(|(digest, _)| TokenId::of_digest(digest))
            .collect()
    }

    /// Every configured token's id with its role.
    pub fn all_ids(&self) -> Vec<(TokenId, Role)> {
        self.tokens
            .iter()
            .map(|(digest, role)| (TokenId::of_digest(digest), *role))
            .collect()
    }

    /// The id and role of the request's bearer token, when it is a
    /// configured one (of any role); `None` without a token or with an
    /// unknown one. For the access log.
    pub fn identify(&self, headers: &HeaderMap) -> Option<(TokenId, Role)> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()))?;
        let presented = digest(presented);
        let role = self.role_of_digest(&presented)?;
        Some((TokenId::of_digest(&presented), role))
    }

    /// Check the request's bearer token: it must be one of a role in `allowed`.
    pub fn check(&self, headers: &HeaderMap, allowed: &[Role]) -> Result<(), ApiError> {
        self.authorize(headers, allowed).map(|_| ())
    }

    /// Check the request's bearer token against `allowed`; the digest of the
    /// token on success.
    pub(super) fn authorize(
        &self,
        headers: &HeaderMap,
        allowed: &[Role],
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
            Some(role) if allowed.contains(&role) => Ok(presented),
            Some(role) => {
                let needed: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "a {} token cannot use this endpoint; it needs a {} token",
                        role.name(),
                        needed.join(" or ")
                    ),
                ))
            }
        }
    }
}

/// A token's identity in logs and metrics: the first 12 hex digits of its
/// SHA-256 (`printf %s "$token" | sha256sum | cut -c1-12`). It names a
/// configured token without revealing it: 48 bits of a hash cannot be turned
/// back into a token of 16 characters or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; 12]);

impl TokenId {
    fn of_digest(digest: &[u8; 32]) -> TokenId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 12];
        for (i, byte) in digest[..6].iter().enumerate() {
            id[2 * i] = HEX[usize::from(byte >> 4)];
            id[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        TokenId(id)
    }

    /// The id of `token`.
    pub fn of(token: &str) -> TokenId {
        TokenId::of_digest(&digest(token.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

fn check_tokens(role: Role, tokens: &[String]) -> Result<(), ConfigError> {
    let name = role.variable();
    if tokens.is_empty() || tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ConfigError(format!(
            "no {} token: set {name} (comma-separated) or {name}_FILE (one per line)",
            role.name()
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
        s.monitor_tokens = s.listener_tokens.clone();
        let e = load(&s);
        assert!(
            e.contains("both roles")
                && e.contains("BACKCHANNEL_MONITOR_TOKENS")
                && !e.contains("listener-token-0123456789"),
            "{e}"
        );

        let mut s = valid();
        s.monitor_tokens = vec!["mon-short".into()];
        let e = load(&s);
        assert!(
            e.contains("BACKCHANNEL_MONITOR_TOKENS") && !e.contains("mon-short"),
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
        assert_eq!(
            tokens.count(Role::Monitor),
            0,
            "monitor tokens are optional"
        );

        let mut s = valid();
        s.monitor_tokens = vec!["monitor-token-0123456789".into()];
        let tokens = Tokens::load(&s).unwrap();
        assert_eq!(
            tokens.role_of(b"monitor-token-0123456789"),
            Some(Role::Monitor)
        );
    }

    #[test]
    fn a_token_id_is_the_start_of_its_sha256() {
        // printf %s submitter-token-0123456789 | sha256sum
        let id = TokenId::of("submitter-token-0123456789");
        assert_eq!(id.as_str().len(), 12);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let full: [u8; 32] = Sha256::digest(b"submitter-token-0123456789").into();
        let hex: String = full[..6].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(id.as_str(), hex);
    }
}
