//! What the agent is doing, for whoever watches it (tests, an embedding program).

use tokio::sync::watch;

/// Counters since the agent started, and whether a stream is open now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// A stream is open.
    pub connected: bool,
    /// Streams opened so far.
    pub connections: u64,
    /// `409 listener_busy` answers: another listener held the stream.
    pub busy: u64,
    /// Job events ignored because the same job was already being handled here.
    pub repeats: u64,
    /// Jobs started (forwarded or echoed).
    pub started: u64,
    /// Jobs whose answer the broker accepted.
    pub answered: u64,
}

/// The sending side, shared by the agent's parts.
#[derive(Debug, Clone)]
pub struct Reporter(watch::Sender<Status>);

impl Reporter {
    pub fn new() -> Reporter {
        Reporter(watch::Sender::new(Status::default()))
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.0.subscribe()
    }

    pub fn update(&self, change: impl FnOnce(&mut Status)) {
        self.0.send_modify(change);
    }
}

impl Default for Reporter {
    fn default() -> Reporter {
        Reporter::new()
    }
}
