//! Integration tests: a real PostgreSQL, one fresh database per test.

mod common;

mod agent;
mod answers;
mod cluster;
mod faults;
mod idle;
mod input;
mod limits;
mod ops;
mod procs;
mod roundtrip;
mod sql;
mod stream;
mod waiting;
