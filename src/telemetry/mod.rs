//! What a running program tells its operator, apart from its answers.
//!
//! - [`logging`]: `tracing` to stderr, text or JSON, never a payload or a token;
//! - [`metrics`]: the broker's Prometheus metrics (`GET /metrics`);
//! - [`registry`]: what every metrics endpoint of this crate shows (the
//!   process's resources, `*_build_info`), shared by the broker and the agent;
//! - [`process`]: the process's memory, file descriptors and CPU from `/proc`;
//! - [`systemd`]: `READY=1`, `RELOADING=1`, `STOPPING=1` on `NOTIFY_SOCKET`.

pub mod logging;
pub mod metrics;
pub mod process;
pub mod registry;
pub mod systemd;

pub use logging::{fatal, init};
pub use metrics::Metrics;
