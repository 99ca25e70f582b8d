//! The configured tokens: where they come from (the variables and the token
//! files), the rules they must follow, and the check of a request's bearer
//! token against them, in constant time. Tokens are never logged.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, StatusCode, header};

use super::Role;
use crate::config::{ConfigError, Settings};
use crate::http::error::ApiError;
use crate::job::{DEFAULT_CHANNEL_NAME, is_channel_name};

/// Shortest token accepted: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

/// The channels a token may use, by name: `None` for every channel (monitor
/// tokens); a token configured without channels has `default`'s.
pub type Channels = Option<Arc<[String]>>;

/// One configured token: its role and its channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token: String,
    pub channels: Vec<String>,
}

impl Grant {
    fn default_channel(token: String) -> Grant {
        Grant {
            token,
            channels: vec![DEFAULT_CHANNEL_NAME.to_owned()],
        }
    }
}

/// The configured tokens, kept as SHA-256 digests: comparing digests of equal
/// length in constant time reveals neither the tokens nor their lengths.
pub struct Tokens {
    tokens: Vec<([u8; 32], Role, Channels)>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// The tokens of `settings`: the lists plus the token files. A file that
    /// cannot be read, holds no token, or holds a token shorter than
    /// [`MIN_TOKEN_LEN`] or with spaces in it is refused, and so is a token
    /// configured for two roles, a listener token for more than one
    /// channel, and a channel name that is no DNS label; the message names
    /// the variable, the file and the line, never the token. Submitter and
    /// listener tokens are required; monitor tokens are optional (a named
    /// file must hold one). The lists' tokens are the default channel's.
    pub fn load(settings: &Settings) -> Result<Tokens, ConfigError> {
        let plain = |tokens: &[String]| -> Vec<Grant> {
            tokens.iter().cloned().map(Grant::default_channel).collect()
        };
        let mut submitter = plain(&settings.submitter_tokens);
        let mut listener = plain(&settings.listener_tokens);
        let mut monitor = plain(&settings.monitor_tokens);
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
                tokens.extend(read_token_file(role, path)?);
            }
        }
        if monitor.iter().all(|t| t.token.trim().is_empty()) {
            monitor.clear();
        } else {
            check_tokens(Role::Monitor, &monitor)?;
        }
        check_tokens(Role::Submitter, &submitter)?;
        check_tokens(Role::Listener, &listener)?;
        let submitter = merge(Role::Submitter, submitter)?;
        let listener = merge(Role::Listener, listener)?;
        let monitor = merge(Role::Monitor, monitor)?;
        let lists = [
            (Role::Submitter, &submitter),
            (Role::Listener, &listener),
            (Role::Monitor, &monitor),
        ];
        for (i, (one, these)) in lists.iter().enumerate() {
            for (other, those) in &lists[i + 1..] {
                if these
                    .iter()
                    .any(|t| those.iter().any(|u| u.token == t.token))
                {
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
        let mut tokens = Vec::new();
        for (role, grants) in lists {
            for grant in grants {
                // A monitor reads every channel's status.
                let channels = (role != Role::Monitor).then(|| Arc::from(grant.channels.clone()));
                tokens.push((digest(grant.token.as_bytes()), role, channels));
            }
        }
        Ok(Tokens { tokens })
    }

    pub fn new(submitter: &[String], listener: &[String]) -> Tokens {
        Tokens::with_roles(&[(Role::Submitter, submitter), (Role::Listener, listener)])
    }

    /// The tokens of each role, for the default channel (monitors: every channel).
    pub fn with_roles(roles: &[(Role, &[String])]) -> Tokens {
        let tokens = roles
            .iter()
            .flat_map(|(role, tokens)| {
                tokens.iter().map(|t| {
                    let channels = (*role != Role::Monitor)
                        .then(|| Arc::from([DEFAULT_CHANNEL_NAME.to_owned()]));
                    (digest(t.as_bytes()), *role, channels)
                })
            })
            .collect();
        Tokens { tokens }
    }

    /// Every channel a token names, each once (the channels to create).
    pub fn channel_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tokens
            .iter()
            .filter_map(|(_, _, channels)| channels.as_deref())
            .flatten()
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The role and channels of a presented token's digest.
    pub(super) fn grant_of_digest(&self, presented: &[u8; 32]) -> Option<(Role, Channels)> {
        let mut found = None;
        for (token, role, channels) in &self.tokens {
            if bool::from(token.ct_eq(presented)) {
                found = Some((*role, channels.clone()));
            }
        }
        found
    }

    /// The role of a presented token; every configured token is compared.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        self.role_of_digest(&digest(presented))
    }

    pub(super) fn role_of_digest(&self, presented: &[u8; 32]) -> Option<Role> {
        self.grant_of_digest(presented).map(|(role, _)| role)
    }

    /// How many tokens `role` has.
    pub fn count(&self, role: Role) -> usize {
        self.tokens.iter().filter(|(_, r, _)| *r == role).count()
    }

    /// The ids of `role`'s tokens ([`TokenId`]), in the order configured.
    pub fn ids(&self, role: Role) -> Vec<TokenId> {
        self.tokens
            .iter()
            .filter(|(_, r, _)| *r == role)
            .map(|(digest, _, _)| TokenId::of_digest(digest))
            .collect()
    }

    /// Every configured token's id with its role.
    pub fn all_ids(&self) -> Vec<(TokenId, Role)> {
        self.tokens
            .iter()
            .map(|(digest, role, _)| (TokenId::of_digest(digest), *role))
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

fn check_tokens(role: Role, grants: &[Grant]) -> Result<(), ConfigError> {
    let name = role.variable();
    let tokens: Vec<&String> = grants.iter().map(|g| &g.token).collect();
    if tokens.is_empty() || tokens.iter().all(|t| t.trim().is_empty()) {
        return Err(ConfigError(format!(
            "no {} token: set {name} (comma-separated) or {name}_FILE (one per line)",
            role.name()
        )));
    }
    for (i, token) in tokens.iter().enumerate() {
        if token.trim() != token.as_str() {
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

/// The same token on several lines of one role: a submitter's channels are
/// all of its lines'; a listener's must be one channel.
fn merge(role: Role, grants: Vec<Grant>) -> Result<Vec<Grant>, ConfigError> {
    let mut merged: Vec<Grant> = Vec::with_capacity(grants.len());
    for grant in grants {
        match merged.iter_mut().find(|g| g.token == grant.token) {
            None => merged.push(grant),
            Some(known) => {
                for channel in grant.channels {
                    if !known.channels.contains(&channel) {
                        known.channels.push(channel);
                    }
                }
            }
        }
    }
    if role == Role::Listener {
        if let Some(i) = merged.iter().position(|g| g.channels.len() > 1) {
            return Err(ConfigError(format!(
                "{}: listener token #{} is configured for more than one channel ({}): \
                 a listener token holds one channel's stream",
                role.variable(),
                i + 1,
                merged[i].channels.join(", ")
            )));
        }
    }
    Ok(merged)
}

/// The tokens of a token file: one per line, `TOKEN` (the default channel)
/// or `TOKEN CHANNEL[,CHANNEL...]`; blank lines and `#` comments ignored.
fn read_token_file(role: Role, path: &Path) -> Result<Vec<Grant>, ConfigError> {
    let name = role.file_variable();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{name}: cannot read {}: {e}", path.display())))?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let token = fields.next().unwrap_or_default();
        let channels = fields.next();
        let problem = if fields.next().is_some() {
            "has more than a token and its channels separated by spaces (TOKEN or \
             TOKEN CHANNEL,CHANNEL; comments on lines of their own)"
                .to_string()
        } else if token.chars().count() < MIN_TOKEN_LEN {
            format!("is shorter than {MIN_TOKEN_LEN} characters")
        } else {
            match channels.map(|list| parse_channels(role, list)).transpose() {
                Err(problem) => problem,
                Ok(channels) => {
                    let mut grant = Grant::default_channel(token.to_owned());
                    if let Some(channels) = channels {
                        grant.channels = channels;
                    }
                    tokens.push(grant);
                    continue;
                }
            }
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

/// The channels of a token line (`site-a,site-b`), or what is wrong with them.
fn parse_channels(role: Role, list: &str) -> Result<Vec<String>, String> {
    if role == Role::Monitor {
        return Err("names channels: a monitor token reads every channel's status".into());
    }
    if list.starts_with('#') {
        return Err(
            "is followed by spaces and a comment: put comments on lines of their own".into(),
        );
    }
    let mut channels: Vec<String> = Vec::new();
    for name in list.split(',') {
        if !is_channel_name(name) {
            return Err(format!(
                "names the channel {name:?}, which is not a channel name (lowercase \
                 letters, digits and inner hyphens, 1 to 63 characters)"
            ));
        }
        if !channels.iter().any(|c| c == name) {
            channels.push(name.to_owned());
        }
    }
    if role == Role::Listener && channels.len() > 1 {
        return Err(
            "names more than one channel: a listener token holds one channel's stream".into(),
        );
    }
    Ok(channels)
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

    fn with_files(submitters: &str, listeners: &str) -> (Settings, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "bc-tokens-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s"), submitters).unwrap();
        std::fs::write(dir.join("l"), listeners).unwrap();
        let mut s = valid();
        s.submitter_tokens_file = Some(dir.join("s"));
        s.listener_tokens_file = Some(dir.join("l"));
        (s, dir)
    }

    #[test]
    fn token_file_lines_name_their_channels() {
        let (s, dir) = with_files(
            "sub-plain-token-00001\nsub-two-chan-token-01 site-a,site-b\n\
             sub-plain-token-00001 site-c\n",
            "lis-site-a-token-0001 site-a\n",
        );
        let tokens = Tokens::load(&s).unwrap();
        let channels = |t: &str| {
            tokens
                .grant_of_digest(&digest(t.as_bytes()))
                .and_then(|(_, c)| c)
                .map(|c| c.to_vec())
        };
        let names = |list: &[&str]| Some(list.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(
            channels("sub-two-chan-token-01"),
            names(&["site-a", "site-b"])
        );
        assert_eq!(
            channels("sub-plain-token-00001"),
            names(&["default", "site-c"]),
            "a submitter's lines add up"
        );
        assert_eq!(channels("lis-site-a-token-0001"), names(&["site-a"]));
        assert_eq!(
            channels("submitter-token-0123456789"),
            names(&["default"]),
            "the variables' tokens are the default channel's"
        );
        assert_eq!(
            tokens.channel_names(),
            ["default", "site-a", "site-b", "site-c"].map(String::from)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn token_file_channels_are_refused_as_the_rules_say() {
        for (submitters, listeners, expected) in [
            (
                "",
                "lis-two-chan-token-01 site-a,site-b\n",
                "more than one channel",
            ),
            (
                "",
                "lis-twice-token-00001 site-a\nlis-twice-token-00001 site-b\n",
                "more than one channel",
            ),
            ("sub-bad-name-token-01 Site_A\n", "", "not a channel name"),
            ("sub-bad-name-token-01 site-a,\n", "", "not a channel name"),
            (
                "sub-three-word-token1 site-a extra\n",
                "",
                "more than a token",
            ),
        ] {
            let submitters = format!("submitter-token-0123456789\n{submitters}");
            let listeners = format!("listener-token-0123456789\n{listeners}");
            let (s, dir) = with_files(&submitters, &listeners);
            let error = Tokens::load(&s).err().expect("refused").to_string();
            assert!(error.contains(expected), "{error}");
            assert!(
                !error.contains("-token-0"),
                "a token in the message: {error}"
            );
            std::fs::remove_dir_all(dir).unwrap();
        }
        // A monitor reads every channel: its lines name none.
        let (mut s, dir) = with_files("", "");
        s.submitter_tokens_file = None;
        s.listener_tokens_file = None;
        std::fs::write(dir.join("m"), "monitor-token-0123456789 site-a\n").unwrap();
        s.monitor_tokens_file = Some(dir.join("m"));
        let error = Tokens::load(&s).err().expect("refused").to_string();
        assert!(
            error.contains("monitor token reads every channel"),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
