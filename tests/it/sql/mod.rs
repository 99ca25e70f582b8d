//! The SQL contract (apps sharing the database may skip HTTP) and the
//! statements the broker itself sends.

mod contract;
mod statements;
