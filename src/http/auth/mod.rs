//! Bearer tokens of the three roles (submitter, listener, monitor):
//!
//! - [`tokens`]: where they come from (the variables and the token files),
//!   the rules they must follow, the check of each request in constant time;
//! - [`reload`]: the set in force, which SIGHUP replaces by reading the token
//!   files again;
//! - [`filter`]: the warp filters that let a request through for a role, and
//!   the [`Grant`] a stream keeps, which ends it when its token goes.
//!
//! Tokens are never logged.

pub mod filter;
pub mod reload;
pub mod tokens;

pub use filter::{Client, Grant, client, grant, require};
pub use reload::LiveTokens;
pub use tokens::{MIN_TOKEN_LEN, TokenId, Tokens};

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Submits jobs, reads, waits on and cancels them; reads the status.
    Submitter,
    /// Holds the stream and answers jobs.
    Listener,
    /// Reads the status (`/v1/stats`, `/v1/listener`) and nothing else: for
    /// monitoring, which must not read payloads or results.
    Monitor,
}

/// Who may use the job routes (submit, read, wait, cancel).
pub const SUBMITTERS: &[Role] = &[Role::Submitter];
/// Who may hold the stream and answer.
pub const LISTENERS: &[Role] = &[Role::Listener];
/// Who may read the status (`/v1/stats`, `/v1/listener`).
pub const STATUS_READERS: &[Role] = &[Role::Submitter, Role::Monitor];

impl Role {
    pub const ALL: [Role; 3] = [Role::Submitter, Role::Listener, Role::Monitor];

    pub fn name(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Listener => "listener",
            Role::Monitor => "monitor",
        }
    }

    /// The variable of the role's comma-separated tokens.
    pub fn variable(self) -> &'static str {
        match self {
            Role::Submitter => "BACKCHANNEL_SUBMITTER_TOKENS",
            Role::Listener => "BACKCHANNEL_LISTENER_TOKENS",
            Role::Monitor => "BACKCHANNEL_MONITOR_TOKENS",
        }
    }

    /// The variable of the role's token file.
    pub fn file_variable(self) -> String {
        format!("{}_FILE", self.variable())
    }
}
