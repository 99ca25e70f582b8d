//! Integration tests: a real PostgreSQL, one fresh database per test.

mod support;

mod agent;
mod answers;
mod cluster;
mod dba_settings;
mod faults;
mod fuzzed;
mod idle;
mod input;
mod limits;
mod openapi;
mod ops;
mod pgbouncer;
mod privileges;
mod roundtrip;
mod security;
mod sql;
mod startup;
mod statements;
mod stream;
mod tls;
mod waiting;
