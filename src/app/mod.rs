//! One broker instance (`backchannel serve`): started, run and shut down.
//!
//! - [`check`]: `serve --check` and `--check-tokens`, the preflight without
//!   serving, one line per check;
//! - [`preflight`]: what `serve` settles before it serves (where connections
//!   go, that the direct URL gives real sessions, the schema and the rights),
//!   and [`migrate`], the schema owner's path;
//! - [`start`](mod@start): the broker, its background loops and the HTTP server;
//! - [`shutdown`]: the signals, and the graceful stop of a [`Running`] instance.

pub mod check;
pub mod preflight;
pub mod shutdown;
pub mod start;

pub use preflight::migrate;
pub use shutdown::shutdown_signal;
pub use start::{Running, start};
