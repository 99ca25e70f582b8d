//! Running it: start-up and settings, token rotation, least privilege, the
//! DBA's settings, connection strings, TLS and PgBouncer in front of
//! PostgreSQL, logs, metrics and what deploy/ builds on them.

mod check;
mod cli;
mod conninfo;
mod dba_settings;
mod deploy;
mod logs;
mod metrics;
mod monitor;
mod notify;
mod papercuts;
mod pgbouncer;
mod privileges;
mod rotation;
mod startup;
mod tls;
mod upgrade;
mod views;
