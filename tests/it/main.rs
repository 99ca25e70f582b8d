//! Integration tests: a real PostgreSQL, one fresh database per test.
//!
//! Grouped by what they specify: `api/` the HTTP contract (docs/PROTOCOL.md,
//! docs/openapi.yaml), `sql/` the SQL contract and the broker's own
//! statements, `agent/` the `backchannel agent` program, `ops/` running it
//! (start-up, settings, logs, metrics, the command line, PostgreSQL set-ups),
//! `faults/` what survives what. Helpers in `support/`; requests are sent
//! through `support::Instance`.

mod support;

mod agent;
mod api;
mod docs;
mod faults;
mod ops;
mod sql;
