//! Bearer tokens of the two roles, compared in constant time and never logged.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::Filter;
use warp::http::{HeaderMap, StatusCode, header};

use super::error::ApiError;

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
        let presented = digest(presented);
        let mut found = None;
        for (token, role) in &self.tokens {
            if bool::from(token.ct_eq(&presented)) {
                found = Some(*role);
            }
        }
        found
    }

    /// Check the request's bearer token against `required`.
    pub fn check(&self, headers: &HeaderMap, required: Role) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        let Some(presented) = presented else {
            return Err(unauthorized("a bearer token is required"));
        };
        match self.role_of(presented) {
            None => Err(unauthorized("the bearer token is not valid")),
            Some(role) if role == required => Ok(()),
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

/// A filter that passes requests carrying a token of `role`.
pub fn require(
    tokens: Arc<Tokens>,
    role: Role,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let result = tokens.check(&headers, role).map_err(warp::reject::custom);
            std::future::ready(result)
        })
        .untuple_one()
}
