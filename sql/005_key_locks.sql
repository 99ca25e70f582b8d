-- backchannel.submit takes the transaction-level advisory lock of its
-- idempotency key, (1650655235, hashtext(key)), before it inserts: the lock the
-- brokers' group commits try for each key (and skip a key they cannot take,
-- running that request on its own). An application that submits with a key
-- and keeps its transaction open (Django's ATOMIC_REQUESTS) then delays only
-- the broker requests with the same key, never the others.
--
-- The namespace 1650655235 is 0x62630003 ("bc", 3); the brokers' other
-- advisory locks use 0x62630001 and 0x62630002. An application that inserts
-- into backchannel.jobs directly, without this function, takes no such lock:
-- a transaction it keeps open with a key can still hold up a broker's group
-- of submits until it ends (docs/postgres.md).

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
    IF submit.idempotency_key IS NOT NULL THEN
        -- The key's lock, as the brokers' inserts take it: a broker that
        -- finds it held runs that one request on its own instead of making
        -- its whole group commit wait for this transaction.
        PERFORM pg_advisory_xact_lock(1650655235, hashtext(submit.idempotency_key));
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
