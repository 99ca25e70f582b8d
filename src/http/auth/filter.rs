//! The filters in front of the routes: a request passes with a token of
//! the route's role ([`require`]), or keeps its accepted token as a
//! [`Grant`] ([`grant`], for the stream, which ends when a reload takes the
//! token away).

use std::sync::Arc;

use tokio::sync::watch;
use warp::Filter;
use warp::http::HeaderMap;

use super::{LiveTokens, Role, Tokens};

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

/// A filter that passes requests carrying a token of a role in `allowed`.
pub fn require(
    tokens: LiveTokens,
    allowed: &'static [Role],
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let result = tokens
                .current()
                .check(&headers, allowed)
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
        let mut receiver = tokens.subscribe();
        let checked = receiver
            .borrow_and_update()
            .authorize(&headers, std::slice::from_ref(&role));
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
