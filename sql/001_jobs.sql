-- The jobs table: the single source of truth every instance reads and writes.
CREATE TABLE backchannel.jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind ~ '^[A-Za-z0-9._:-]{1,200}$'),
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'done', 'failed', 'expired', 'cancelled')),
    payload         jsonb       NOT NULL DEFAULT 'null'::jsonb,
    result          jsonb,
    error           jsonb,
    attempts        integer     NOT NULL DEFAULT 0,
    -- the stream that last claimed the job: a job is sent at most once per stream
    stream_id       bigint,
    idempotency_key text        UNIQUE CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    created_at      timestamptz NOT NULL DEFAULT now(),
    deadline        timestamptz NOT NULL,
    completed_at    timestamptz,
    CHECK ((state IN ('pending', 'delivered')) = (completed_at IS NULL))
);

-- What the stream claims: open jobs, oldest first.
CREATE INDEX jobs_open_idx ON backchannel.jobs (id) WHERE state IN ('pending', 'delivered');
-- What the reaper expires: open jobs by deadline.
CREATE INDEX jobs_open_deadline_idx ON backchannel.jobs (deadline) WHERE state IN ('pending', 'delivered');
-- What the reaper deletes: terminal jobs by age.
CREATE INDEX jobs_completed_idx ON backchannel.jobs (completed_at) WHERE completed_at IS NOT NULL;

-- Every stream gets a number; jobs remember the stream that last sent them.
CREATE SEQUENCE backchannel.stream_seq;

-- Who holds the stream. The advisory lock is the truth; this row only describes
-- the holder, and is valid while its pid is the lock's holder in pg_locks.
CREATE TABLE backchannel.stream_holder (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    listener_id text,
    instance    text        NOT NULL,
    pid         integer     NOT NULL,
    stream_id   bigint      NOT NULL,
    since       timestamptz NOT NULL DEFAULT now()
);

-- The SQL contract: apps sharing the database may submit without HTTP.
-- Returns the job's id (the existing job's id for a repeated idempotency key)
-- and wakes the stream holder on whichever instance it lives.
CREATE FUNCTION backchannel.submit(
    kind text,
    payload jsonb,
    timeout interval,
    idempotency_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF timeout IS NULL OR timeout <= interval '0' THEN
        RAISE EXCEPTION 'backchannel.submit: timeout must be positive' USING ERRCODE = '22023';
    END IF;
    INSERT INTO backchannel.jobs (kind, payload, deadline, idempotency_key)
    VALUES (submit.kind, coalesce(submit.payload, 'null'::jsonb), now() + submit.timeout, submit.idempotency_key)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT j.id INTO new_id FROM backchannel.jobs j WHERE j.idempotency_key = submit.idempotency_key;
        RETURN new_id;
    END IF;
    PERFORM pg_notify('backchannel_new', new_id::text);
    RETURN new_id;
END
$$;
