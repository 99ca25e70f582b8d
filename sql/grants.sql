-- The rights of backchannel's runtime role (the role of DATABASE_URL for
-- `backchannel serve`), and nothing more. Not a migration: run it after
-- `backchannel migrate`, as the role that owns schema backchannel:
--
--   psql "postgres://owner@db.internal/backchannel" -v role=backchannel_app -f sql/grants.sql
--
-- or `DATABASE_URL=<the owner's URL> backchannel migrate --grant backchannel_app`.
-- Run it again after every migration that adds an object (the release notes say so).
--
-- The runtime role needs no CREATE on the database or any schema, owns
-- nothing, and needs no further grants for:
-- - session advisory locks (the stream) and transaction advisory locks (the
--   reaper's tick, migrations): every role may take them;
-- - LISTEN/NOTIFY on backchannel_new and backchannel_done: every role may;
-- - pg_locks, read to find the stream's holder: readable by every role;
-- - the takeover (a listener replacing its own stale stream), which ends the
--   stale session with pg_terminate_backend: allowed when that session has
--   the same role, as it does when every instance uses this role. Instances
--   running as different roles need membership in pg_signal_backend.
-- CONNECT on the database is PUBLIC's by default; grant it if you revoked it.

GRANT USAGE ON SCHEMA backchannel TO :"role";

-- serve checks the schema's version at start-up.
GRANT SELECT ON backchannel.schema_migrations TO :"role";

-- Submit, claim, answer, cancel, expire (UPDATE), delete after the retention (DELETE).
GRANT SELECT, INSERT, UPDATE, DELETE ON backchannel.jobs TO :"role";

-- The record of who holds the stream.
GRANT SELECT, INSERT, UPDATE, DELETE ON backchannel.stream_holder TO :"role";

-- Numbers each new stream (nextval).
GRANT USAGE ON SEQUENCE backchannel.stream_seq TO :"role";

-- The named channels: the brokers create those their token files name,
-- and read them all (sql/007).
GRANT SELECT, INSERT ON backchannel.channels TO :"role";
GRANT USAGE ON SEQUENCE backchannel.channels_id_seq TO :"role";

-- Job ids: a group of submits takes its ids before the insert (nextval), so
-- that each request finds its own row among those the statement returns.
GRANT USAGE ON SEQUENCE backchannel.jobs_id_seq TO :"role";

-- The SQL contract's submit, for applications that share the database
-- (EXECUTE is PUBLIC's by default; granted here in case it was revoked).
GRANT EXECUTE ON FUNCTION backchannel.submit(text, jsonb, interval, text, text) TO :"role";
