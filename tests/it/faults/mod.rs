//! What survives what: the database or a broker process going away, clients
//! that hang up or vanish, bad rows, and group commit under contention and
//! failure. Nothing is mocked.

mod database;
mod forwarding;
mod group_commit;
mod hangups;
mod isolation;
mod pg_major;
mod poison;
mod processes;
mod shared_backends;
mod silent;
