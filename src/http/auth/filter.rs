//! The filters in front of the routes: a request passes with a token of
//! the route's role ([`require`]), or keeps its accepted token as a
//! [`Grant`] ([`grant`], for the stream, which ends when a reload takes the
//! token away).

use std::sync::Arc;

use tokio::sync::watch;
use warp::Filter;
use warp::http::HeaderMap;

use super::tokens::Channels;
use super::{LiveTokens, Role, Tokens};
use crate::job::DEFAULT_CHANNEL_NAME;

/// Who a request's token speaks for: its role and the channels it may use.
#[derive(Debug, Clone)]
pub struct Client {
    pub role: Role,
    /// By name; `None`: every channel (a monitor token).
    pub channels: Channels,
}

impl Client {
    /// Whether the token may use the channel named `name`.
    pub fn may_use(&self, name: &str) -> bool {
        match &self.channels {
            None => true,
            Some(channels) => channels.iter().any(|c| c == name),
        }
    }

    /// A client of `role` on the default channel (an earlier release's
    /// forwarded request, which named no channels).
    pub fn of_default(role: Role) -> Client {
        Client {
            role,
            channels: Some(Arc::from([DEFAULT_CHANNEL_NAME.to_owned()])),
        }
    }
}

/// A request's token, accepted for a role: kept by the stream, which ends
/// when the token is no longer valid for that role and its channel.
pub struct Grant {
    digest: [u8; 32],
    role: Role,
    channels: Channels,
    tokens: watch::Receiver<Arc<Tokens>>,
}

impl Grant {
    /// Who the token speaks for.
    pub fn client(&self) -> Client {
        Client {
            role: self.role,
            channels: self.channels.clone(),
        }
    }

    /// Resolves once a reload took the token away, gave it the other role,
    /// or took `channel` from it.
    pub async fn revoked(mut self, channel: String) {
        loop {
            if self.tokens.changed().await.is_err() {
                // No more reloads can happen.
                return std::future::pending().await;
            }
            let now = self
                .tokens
                .borrow_and_update()
                .grant_of_digest(&self.digest);
            let kept = now.is_some_and(|(role, channels)| {
                role == self.role && Client { role, channels }.may_use(&channel)
            });
            if !kept {
                return;
            }
        }
    }
}

/// A filter that passes requests carrying a token of a role in `allowed`,
/// with who it speaks for.
pub fn client(
    tokens: LiveTokens,
    allowed: &'static [Role],
) -> impl Filter<Extract = (Client,), Error = warp::Rejection> + Clone {
    warp::header::headers_cloned().and_then(move |headers: HeaderMap| {
        let current = tokens.current();
        let result = current
            .authorize(&headers, allowed)
            .map(|digest| {
                let (role, channels) = current
                    .grant_of_digest(&digest)
                    .expect("an authorized token is configured");
                Client { role, channels }
            })
            .map_err(warp::reject::custom);
        std::future::ready(result)
    })
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
        let (checked, channels) = {
            let current = receiver.borrow_and_update();
            let checked = current.authorize(&headers, std::slice::from_ref(&role));
            let channels = checked
                .as_ref()
                .ok()
                .and_then(|digest| current.grant_of_digest(digest))
                .and_then(|(_, channels)| channels);
            (checked, channels)
        };
        let result = checked
            .map(|digest| Grant {
                digest,
                role,
                channels,
                tokens: receiver,
            })
            .map_err(warp::reject::custom);
        std::future::ready(result)
    })
}
