//! backchannel: a broker that lets a service in a private network receive jobs
//! from an internet-facing one over a single outbound Server-Sent-Events stream.
//!
//! Instances share one PostgreSQL database: jobs live in `backchannel.jobs`,
//! instances wake each other with LISTEN/NOTIFY, and a session advisory lock
//! keeps exactly one listener stream open across the cluster, per named
//! channel (docs/channels.md).
//!
//! # Modules
//!
//! - [`app`]: one instance (`serve`): its preflight, start and shutdown;
//! - [`cli`]: the command line, its dispatch, and the small subcommands
//!   (`submit`, `status`, `migrate`, the manual);
//! - [`config`]: `serve`'s settings (a leaf: it imports nothing of the crate);
//! - [`http`]: the edge (routes, handlers, tokens, bodies, errors, the access log);
//! - [`broker`]: the domain, one file per step of a job's life;
//! - [`wake`]: who waits for what here, LISTEN in, NOTIFY out;
//! - [`store`]: every database call and every SQL statement;
//! - [`agent`]: the listener side as a ready program (`agent`);
//! - [`telemetry`]: logging, metrics, the process's own resources;
//! - [`seal`]: sealed/v1 (payloads and answers sealed end to end, docs/sealed.md);
//! - [`job`]: the contract's job, and the notification channels;
//! - [`json`]: what JSON may be stored and sent;
//! - [`backoff`]: waiting before the next attempt (every reconnecting loop).
//!
//! Imports run one way, down: `app → http → broker → wake → store` (a layer
//! may skip down: `app`'s preflight uses `store`); `telemetry` is recorded
//! into by every layer and reads only `job`; `job`, `json`, `config`,
//! `backoff` and `seal` are leaves anyone may use (`seal` is used by the
//! broker's gate, the agent and the command line). `cli` runs `app`, `agent` and (for
//! `migrate`) `store`; `agent` talks HTTP, with the leaves and `telemetry` only.
//!
//! # Where things are
//!
//! ```text
//! src/main.rs          the program: parse, set up logging, run (cli::Cli::run)
//! src/lib.rs           this map
//! src/config.rs        serve's settings, one flag and one variable each; the boolean parser
//! src/job.rs           Job, JobState, NewJob, Answer, JobEvent; CHANNEL_NEW, CHANNEL_DONE; NewJobWake;
//!                      ChannelId, DEFAULT_CHANNEL, is_channel_name, Scope (the named channels)
//! src/json.rs          the rules for stored and sent JSON (depth, size, numbers, U+0000)
//! src/backoff.rs       exponential, jittered, capped delays
//! src/app/             serve: preflight.rs (URLs, sessions, schema, rights; migrate),
//!                      start.rs (pool, broker, loops, HTTP server), shutdown.rs (signals, stop),
//!                      check.rs (serve --check, --check-tokens)
//! src/cli/             mod.rs (the Cli enum and dispatch), submit.rs (also sealed), status.rs,
//!                      check.rs (status --check verdicts), api.rs (what submit and status
//!                      share), keys.rs (keys new|id), migrate.rs, manual.rs (man pages,
//!                      completions)
//! src/http/            routes.rs (one filter per route), handlers.rs, input.rs (validation),
//!                      body.rs, error.rs (the error body, recover), documented.rs (ROUTES and
//!                      the gate), access.rs (access log, request counts), openapi.rs, serve.rs
//!                      (the accept loop), forward.rs (forwarding to the holder, hops received)
//! src/http/auth/       tokens.rs (files, rules, constant-time check, token ids), reload.rs
//!                      (SIGHUP), filter.rs (the filters of the three roles, Grant)
//! src/broker/          mod.rs (Broker, BrokerError, settle), submit.rs, wait.rs, stream.rs,
//!                      answer.rs, cancel.rs, reaper.rs, recheck.rs, ended_elsewhere.rs,
//!                      sealed.rs (the seal gate),
//!                      announce.rs (how a new job and an end are announced), readiness.rs,
//!                      holder.rs (the stream holder's address, for forwarding),
//!                      channels.rs (the channel map: names and ids, limits, a token's scope),
//!                      status.rs (listener, stats, /metrics gauges)
//! src/wake/            hub.rs (waiters, the local stream, NewJobWake decided), listen.rs
//!                      (the LISTEN loop and its dispatch), notify.rs (coalesced NOTIFYs)
//! src/store/           mod.rs (Store, the group-commit queues), one file per operation:
//!                      insert.rs, finish.rs, read.rs, notify.rs, reap.rs, status.rs, health.rs,
//!                      channels.rs (channels created and read, a channel's open jobs counted);
//!                      batch.rs (the generic Batcher), pooled.rs (prepared or unnamed),
//!                      rows.rs, error.rs, pooler.rs; connect.rs (targets, the pool, sessions
//!                      and their set-up), probe.rs, stream_session.rs, listen_session.rs,
//!                      migrate.rs, schema.rs
//! src/store/sql/       every statement, by what it touches: jobs.rs, stream.rs, channels.rs (the
//!                      named channels), notifications.rs (LISTEN and the coalesced NOTIFYs),
//!                      maintenance.rs, status.rs, session.rs, schema.rs (Sql, POOLED in mod.rs)
//! src/store/conninfo/  mod.rs (connection strings read as libpq's PQconninfoParse reads them),
//!                      config.rs (their keywords made a tokio-postgres Config)
//! src/store/tls/       mod.rs (sslmode, libpq's rules), verify.rs, explain.rs
//! src/agent/           mod.rs (Agent, the reconnect loop), args.rs, stream.rs, sse.rs, jobs.rs,
//!                      forward.rs, probe.rs (the handler watched), answer.rs, sealed.rs (keys,
//!                      SIGHUP, sealing answers), status.rs, metrics.rs, health.rs
//! src/seal/            sealed/v1: keys.rs, envelope.rs, request.rs (seal), open.rs (check and
//!                      open in SEALED.md's order), answer.rs, replay.rs, door.rs (the broker's gate)
//! src/telemetry/       logging.rs, metrics.rs (the broker's, by area), registry.rs (shared
//!                      with the agent: build_info, the process collector), process.rs,
//!                      systemd.rs (READY=1 and co. on NOTIFY_SOCKET)
//! sql/                 the numbered migrations and grants.sql
//! build.rs             docs/openapi.yaml converted to the JSON served at /openapi.json
//! tests/it/            the integration tests, one binary, by what they specify: api/, sql/,
//!                      agent/, ops/, faults/, docs.rs; support/ is the harness
//! bench/               backchannel-bench, the load test (its own crate; README.md: the numbers)
//! clients/python/      the Python client and the Django sides
//! docs/                the pages (README.md is their index), PROTOCOL.md, openapi.yaml
//! deploy/              the Debian package's files (debian/), Prometheus rules, Grafana
//! scripts/             what make and CI run (PostgreSQL, test tools, demo, fuzz, deb check)
//! ```

pub mod agent;
pub mod app;
pub mod backoff;
pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod job;
pub mod json;
pub mod seal;
pub mod store;
pub mod telemetry;
pub mod wake;
