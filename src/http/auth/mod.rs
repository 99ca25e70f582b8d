//! Bearer tokens of the two roles:
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

pub use filter::{Grant, grant, require};
pub use reload::LiveTokens;
pub use tokens::{MIN_TOKEN_LEN, Tokens};

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Submitter,
    Listener,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Listener => "listener",
        }
    }
}
