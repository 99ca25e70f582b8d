//! Watching the handler: one probe at start (does anyone answer at the
//! forward URL, is it the castellum kit, does the kit take the agent's shared
//! secret?), then a probe every few seconds while the handler is failing, so
//! that `/readyz` recovers when it is back even if no job arrives.
//!
//! A probe is `GET <forward URL>` with the shared secret, sent to the
//! configured origin only (no redirect is followed). It runs no job: the kit
//! answers `405` with the right secret and `403` without, both with its
//! `X-Backchannel-Kit` header. Probes only log and inform `/readyz`; the agent
//! never refuses to start for them (the handler may start after the agent).

use std::time::Duration;

use reqwest::header::{self, HeaderName};
use reqwest::{StatusCode, Url};

use super::args::Secret;
use super::forward::{Handler, marks, no_one_there, origin_of, secret_value};

/// How often a failing handler is probed.
const RECHECK: Duration = Duration::from_secs(2);
/// The most a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a probe found.
enum Probed {
    Answered {
        status: StatusCode,
        kit: bool,
        location: Option<String>,
    },
    /// No one took the connection.
    NoOne,
    /// Something else (a timeout, TLS).
    Failed(&'static str),
}

/// Probe at start and log what was found, then probe while the handler is
/// failing; runs until dropped.
pub async fn watch(handler: Handler, url: Url, secret: Option<(HeaderName, Secret)>) {
    if handler.expect_kit && secret.is_none() {
        tracing::warn!(
            "no shared secret for the handler (BACKCHANNEL_FORWARD_HEADER_FILE): the castellum kit refuses every job without it (403 forbidden)"
        );
    }
    let first = probe(&handler, &url, secret.as_ref()).await;
    tell(&handler, &url, secret.is_some(), &first);
    loop {
        tokio::time::sleep(RECHECK).await;
        if !handler.reporter.handler_failing() {
            continue;
        }
        if let Probed::Answered { .. } = probe(&handler, &url, secret.as_ref()).await {
            tracing::info!("the handler answers again");
        }
    }
}

async fn probe(handler: &Handler, url: &Url, secret: Option<&(HeaderName, Secret)>) -> Probed {
    let mut request = handler
        .client
        .get(url.clone())
        .timeout(PROBE_TIMEOUT)
        .header(header::ACCEPT, "application/json");
    if let Some((name, value)) = secret {
        request = request.header(name.clone(), secret_value(value));
    }
    match request.send().await {
        Ok(response) => {
            handler.reporter.handler_answered();
            let (kit, location) = marks(response.headers());
            Probed::Answered {
                status: response.status(),
                kit,
                location,
            }
        }
        Err(error) if no_one_there(&error) => {
            handler.reporter.handler_unreachable();
            Probed::NoOne
        }
        Err(error) if error.is_timeout() => Probed::Failed("no answer in time"),
        Err(_) => Probed::Failed("the request failed"),
    }
}

/// Log what the start-up probe found: a warning for what will fail jobs.
fn tell(handler: &Handler, url: &Url, has_secret: bool, probed: &Probed) {
    let path = url.path();
    let Probed::Answered {
        status,
        kit,
        location,
    } = probed
    else {
        match probed {
            Probed::NoOne => tracing::warn!(
                path,
                "no one answers at the forward URL yet: jobs wait for the handler until shortly before their deadline"
            ),
            Probed::Failed(why) => {
                tracing::warn!(path, reason = why, "cannot probe the forward URL")
            }
            Probed::Answered { .. } => {}
        }
        return;
    };
    let status = status.as_u16();
    if (300..400).contains(&status) {
        let origin = location.as_deref().and_then(|l| origin_of(url, l));
        tracing::warn!(
            status,
            path,
            location = origin.as_deref().unwrap_or(""),
            "the forward URL answers with a redirect, which the agent never follows: jobs would fail with handler_redirect"
        );
    } else if *kit && status == 403 {
        let why = if has_secret {
            "the agent's shared secret is not the kit's"
        } else {
            "no shared secret is configured"
        };
        tracing::warn!(
            status,
            path,
            reason = why,
            "the castellum kit at the forward URL refuses the agent (403 forbidden): every job would fail; check BACKCHANNEL_FORWARD_HEADER_FILE"
        );
    } else if *kit && handler.expect_kit {
        tracing::info!(status, path, "the forward URL answers as the castellum kit");
    } else if *kit {
        tracing::info!(
            status,
            path,
            "the forward URL answers as the castellum kit: set BACKCHANNEL_EXPECT_KIT=true so that a wrong URL fails jobs with not_the_kit"
        );
    } else if handler.expect_kit {
        tracing::warn!(
            status,
            path,
            "the forward URL does not answer as the castellum kit (no X-Backchannel-Kit header): jobs would fail with not_the_kit; check its path"
        );
    } else {
        tracing::debug!(status, path, "the forward URL answers");
    }
}
