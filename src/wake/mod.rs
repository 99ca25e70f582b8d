//! How a process learns that something changed, without polling:
//!
//! - [`hub`]: who waits for which job here, the local stream's waker, and
//!   how a new job reaches the stream ([`Hub::new_job_wake`]);
//! - [`listen`]: keeping the LISTEN session up, and dispatching what it hears
//!   (to the hub, and ended jobs with waiters here to the broker);
//! - [`notify`]: outgoing NOTIFYs, coalesced into few transactions.

pub mod hub;
pub mod listen;
pub mod notify;

pub use hub::{Ending, Hub, StreamWaker, WaitPermit, Waiter};
pub use listen::Dispatch;
pub use notify::Notifier;
