//! Where the stream's holder is, for forwarding (docs/scaling.md). Each
//! instance with forwarding on keeps the holder's advertised address in
//! memory, so that deciding where a request goes costs no query, and reads it
//! again only when it may have changed: at start, when a stream opens or
//! closes anywhere (`NOTIFY backchannel_holder`, sent by the stream session's
//! own statements), after every LISTEN reconnect (such news may have been
//! missed), and [`RETRY`] after a forward to it failed (a holder killed
//! without closing its stream sends no notification). Idle, that is no query
//! at all.
//!
//! The holder is the default channel's: it carries the work of every
//! channel (one writer for the cluster); an instance that holds another
//! channel's stream only is no forwarding target.
//!
//! A stale address costs nothing but efficiency: any instance can do any
//! work, and one that receives forwarded work while it no longer holds the
//! stream does it as it would its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Broker;
use crate::job::DEFAULT_CHANNEL;

/// How long after a failed forward the holder's address is read again.
pub const RETRY: Duration = Duration::from_secs(1);

/// The holder's advertised URL and instance name, as last read, and the
/// signal that a forward to it failed.
#[derive(Default)]
pub(super) struct HolderCache {
    known: Mutex<Option<(String, String)>>,
    failed: Notify,
}

impl HolderCache {
    fn set(&self, holder: Option<(String, String)>) {
        *self.known.lock().expect("holder lock") = holder;
    }

    fn get(&self) -> Option<(String, String)> {
        self.known.lock().expect("holder lock").clone()
    }
}

/// Where to forward: the holder's URL and instance name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub url: String,
    pub instance: String,
}

impl Broker {
    /// The URL at which this instance is reached by the others, recorded
    /// with its stream: only with forwarding on (a holder without the
    /// cluster secret could not check what it is sent).
    pub fn advertise_url(&self) -> Option<&str> {
        self.settings
            .forwarding()
            .then_some(self.settings.advertise_url.as_deref())
            .flatten()
    }

    /// The holder to forward this instance's work to: `None` when
    /// forwarding is off, when this instance holds the stream, when no
    /// holder recorded an address, or when that address is this instance's.
    pub fn forward_target(&self) -> Option<Holder> {
        if !self.settings.forwarding() || self.hub.holds_stream(DEFAULT_CHANNEL) {
            return None;
        }
        let (url, instance) = self.holder.get()?;
        if Some(url.as_str()) == self.settings.advertise_url.as_deref() {
            return None;
        }
        // Read from a table others can write: only a bare origin
        // (scheme, host, port) is ever sent to, never a path or a query.
        if crate::config::advertised(&url).ok().as_deref() != Some(url.as_str()) {
            return None;
        }
        Some(Holder { url, instance })
    }

    /// A forward to `url` failed: this instance does its own work until the
    /// holder's address is read again ([`RETRY`] later, or sooner when a
    /// stream opens or closes).
    pub fn forget_holder(&self, url: &str) {
        let mut known = self.holder.known.lock().expect("holder lock");
        if known.as_ref().is_some_and(|(known, _)| known == url) {
            *known = None;
            self.holder.failed.notify_one();
        }
    }
}

/// Keep the holder's address until shutdown: read at start, then whenever it
/// may have changed.
pub(super) async fn run(broker: Arc<Broker>) {
    loop {
        match broker.store.holder_address(DEFAULT_CHANNEL).await {
            Ok(holder) => broker.holder.set(holder),
            Err(error) => {
                tracing::debug!(%error, "could not read the stream holder's address");
                broker.holder.set(None);
                broker.holder.failed.notify_one();
            }
        }
        tokio::select! {
            _ = broker.hub.holder_may_have_moved() => {}
            _ = async {
                broker.holder.failed.notified().await;
                tokio::time::sleep(RETRY).await;
            } => {}
            _ = broker.shutdown.cancelled() => return,
        }
    }
}
