-- The SQL contract's submit refuses at the door what the HTTP API refuses, so
-- that a job written through SQL can always be sent to a listener:
--
--   timeout not positive, or longer than backchannel.max_timeout   SQLSTATE 22023
--   payload longer than backchannel.max_payload_bytes, written out  SQLSTATE 54000
--   arrays and objects nested more than 127 deep                     SQLSTATE 54000
--   a number of 10^4300 or more (written out: 4,301 digits or more)  SQLSTATE 22003
--   kind or idempotency_key outside their rules (the domains)       SQLSTATE 23514
--
-- backchannel.max_timeout (an interval, default 1 hour) and
-- backchannel.max_payload_bytes (default 1048576) are settings a DBA may give
-- the database or a role (ALTER DATABASE ... SET backchannel.max_timeout =
-- '2 hours'), to match the brokers' BACKCHANNEL_MAX_TIMEOUT and
-- BACKCHANNEL_MAX_BODY. The depth and number limits are those of common JSON
-- parsers (serde_json, Python's json), fixed.
CREATE OR REPLACE FUNCTION backchannel.submit(
    kind text,
    payload jsonb,
    timeout interval,
    idempotency_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
    max_timeout interval := coalesce(
        nullif(current_setting('backchannel.max_timeout', true), '')::interval,
        interval '1 hour');
    max_bytes bigint := coalesce(
        nullif(current_setting('backchannel.max_payload_bytes', true), '')::bigint,
        1048576);
    stored jsonb := coalesce(payload, 'null'::jsonb);
BEGIN
    IF timeout IS NULL OR timeout <= interval '0' THEN
        RAISE EXCEPTION 'backchannel.submit: timeout must be positive' USING ERRCODE = '22023';
    END IF;
    IF timeout > max_timeout THEN
        RAISE EXCEPTION 'backchannel.submit: timeout must be at most %', max_timeout
            USING ERRCODE = '22023',
                  HINT = 'The limit is the setting backchannel.max_timeout.';
    END IF;
    IF octet_length(stored::text) > max_bytes THEN
        RAISE EXCEPTION 'backchannel.submit: the payload is larger than % bytes, written out', max_bytes
            USING ERRCODE = '54000',
                  HINT = 'The limit is the setting backchannel.max_payload_bytes.';
    END IF;
    IF jsonb_path_exists(stored, 'strict $.**{127} ? (@.type() == "array" || @.type() == "object")') THEN
        RAISE EXCEPTION 'backchannel.submit: the payload nests arrays and objects more than 127 deep'
            USING ERRCODE = '54000';
    END IF;
    IF jsonb_path_exists(stored, 'strict $.** ? (@.type() == "number" && @.abs() >= 1e4300)') THEN
        RAISE EXCEPTION 'backchannel.submit: the payload holds a number of 4301 digits or more, which many JSON parsers refuse'
            USING ERRCODE = '22003';
    END IF;
    INSERT INTO backchannel.jobs (kind, payload, deadline, idempotency_key)
    VALUES (submit.kind, stored, now() + submit.timeout, submit.idempotency_key)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        SELECT j.id INTO new_id FROM backchannel.jobs j WHERE j.idempotency_key = submit.idempotency_key;
        RETURN new_id;
    END IF;
    PERFORM pg_notify('backchannel_new', new_id::text);
    RETURN new_id;
END
$$;
