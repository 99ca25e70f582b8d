//! The schema: the migrations' ledger (applied by the owner), and what
//! `serve` reads to check the schema and its role's rights.

/// Whether the schema exists (creating it needs CREATE on the database;
/// a DBA may instead create it for the owner: `CREATE SCHEMA backchannel
/// AUTHORIZATION owner`).
pub const SCHEMA_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace
    WHERE nspname = 'backchannel')";
pub const CREATE_SCHEMA: &str = "CREATE SCHEMA IF NOT EXISTS backchannel";
/// Where the applied migrations are recorded.
pub const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS backchannel.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";
pub const APPLIED: &str = "SELECT version FROM backchannel.schema_migrations";
pub const RECORD: &str =
    "INSERT INTO backchannel.schema_migrations (version, name) VALUES ($1, $2)";

/// Migrations run one instance at a time (a transaction-level advisory lock).
pub const MIGRATE_LOCK: &str = "SELECT pg_advisory_xact_lock($1, $2)";

/// Whether `backchannel.schema_migrations` exists (read from the catalog:
/// needs no right on the schema).
pub const LEDGER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'backchannel' AND c.relname = 'schema_migrations')";

/// The rights the runtime role needs (sql/grants.sql), each with whether the
/// current role holds it; NULL when the object does not exist. Objects are
/// found through the catalog, so the check needs no right itself.
pub const RUNTIME_RIGHTS: &str = "SELECT r.privilege || ' on ' || r.label,
        CASE r.kind
            WHEN 'schema' THEN has_schema_privilege(n.oid, r.privilege)
            WHEN 'table' THEN has_table_privilege(c.oid, r.privilege)
            WHEN 'sequence' THEN has_sequence_privilege(c.oid, r.privilege)
            WHEN 'function' THEN has_function_privilege(p.oid, r.privilege)
        END
    FROM (VALUES
        (1, 'schema', 'backchannel', 'schema backchannel', 'USAGE'),
        (2, 'table', 'schema_migrations', 'backchannel.schema_migrations', 'SELECT'),
        (3, 'table', 'jobs', 'backchannel.jobs', 'SELECT'),
        (4, 'table', 'jobs', 'backchannel.jobs', 'INSERT'),
        (5, 'table', 'jobs', 'backchannel.jobs', 'UPDATE'),
        (6, 'table', 'jobs', 'backchannel.jobs', 'DELETE'),
        (7, 'table', 'stream_holder', 'backchannel.stream_holder', 'SELECT'),
        (8, 'table', 'stream_holder', 'backchannel.stream_holder', 'INSERT'),
        (9, 'table', 'stream_holder', 'backchannel.stream_holder', 'UPDATE'),
        (10, 'table', 'stream_holder', 'backchannel.stream_holder', 'DELETE'),
        (11, 'sequence', 'stream_seq', 'sequence backchannel.stream_seq', 'USAGE'),
        (12, 'sequence', 'jobs_id_seq', 'sequence backchannel.jobs_id_seq', 'USAGE'),
        (13, 'function', 'submit', 'function backchannel.submit', 'EXECUTE'),
        (14, 'table', 'channels', 'backchannel.channels', 'SELECT'),
        (15, 'table', 'channels', 'backchannel.channels', 'INSERT'),
        (16, 'sequence', 'channels_id_seq', 'sequence backchannel.channels_id_seq', 'USAGE')
    ) AS r(ord, kind, object, label, privilege)
    LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'backchannel'
    LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.object
    LEFT JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid AND p.proname = r.object
    ORDER BY r.ord";

/// Who the broker is in the database.
pub const CURRENT_ROLE: &str = "SELECT current_user::text";

/// Who and where a connection is, for `serve --check`: the role, the
/// database and the server's version. Sent as a simple query (it may go
/// through a transaction pooler).
pub const WHO_AND_WHERE: &str = "SELECT current_user::text, current_database()::text,
    current_setting('server_version')";

/// Whether a role of that name exists (`migrate --grant ROLE`).
pub const ROLE_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)";
