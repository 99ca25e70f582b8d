//! Integration tests: a real PostgreSQL, one fresh database per test.

mod common;

mod agent;
mod answers;
mod cluster;
mod idle;
mod input;
mod roundtrip;
mod sql;
mod stream;
mod waiting;
