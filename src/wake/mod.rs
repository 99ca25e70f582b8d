//! How a process learns that something changed, without polling:
//!
//! - [`hub`]: who waits for which job here, and the local stream's waker;
//! - [`listen`]: the LISTEN session, feeding the hub from other instances;
//! - [`notify`]: outgoing NOTIFYs, coalesced into few transactions.

pub mod hub;
pub mod listen;
pub mod notify;

pub use hub::{Hub, StreamWaker, WaitPermit, Waiter};
pub use listen::Dispatch;
pub use notify::Notifier;
