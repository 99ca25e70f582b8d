//! Integration tests: a real PostgreSQL, one fresh database per test.

mod support;

mod agent;
mod answers;
mod cluster;
mod dba_settings;
mod deploy;
mod faults;
mod fuzzed;
mod group;
mod hangups;
mod idle;
mod input;
mod limits;
mod openapi;
mod ops;
mod papercuts;
mod pgbouncer;
mod poison;
mod privileges;
mod rotation;
mod roundtrip;
mod security;
mod silent;
mod sql;
mod startup;
mod statements;
mod stream;
mod tls;
mod waiting;
mod watching;
