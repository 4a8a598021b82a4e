-- catga's stores: idempotency keys, dead letters, event streams and saga instances.
-- Unqualified names, as in 0001: `catga_postgres::migrate` runs this with the configured schema
-- first on the search path, so every table lands in that schema.

-- Idempotency keys (`PostgresIdempotencyStore`): one row per claimed or completed key.
CREATE TABLE IF NOT EXISTS idempotency (
    -- The message's wire name.
    message    text        NOT NULL,
    -- The event handler deduplicated, or '' for a command or query (handler names are never
    -- empty, and a primary key cannot hold NULL).
    handler    text        NOT NULL,
    -- Whether `id` is a key the message declares rather than its message id: the two never
    -- match each other, even with equal text.
    declared   boolean     NOT NULL,
    id         text        NOT NULL,
    -- The reply (JSON) once completed; NULL while the key is claimed.
    reply      bytea,
    -- While claimed, the end of the lease; once completed, the end of the reply's TTL. A row
    -- past it counts as absent. By the database's clock, so instances need not agree on time.
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (message, handler, declared, id)
);
-- What `purge_expired` deletes.
CREATE INDEX IF NOT EXISTS idempotency_expires_at ON idempotency (expires_at);

-- Messages that could not be handled (`PostgresDeadLetterStore`): every field of a
-- `DeadLetterRecord`.
CREATE TABLE IF NOT EXISTS dead_letters (
    -- UUID v7: ordering by id is ordering by when the record was made.
    id             uuid        PRIMARY KEY,
    message        text        NOT NULL,
    handler        text,
    -- The message as received or encoded; NULL for a message that cannot be replayed.
    payload        bytea,
    code           text        NOT NULL,
    error          text        NOT NULL,
    -- A `u32`: bigint holds every value.
    attempts       bigint      NOT NULL CHECK (attempts >= 0),
    message_id     uuid        NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    -- `[[name, value], …]`, in order, duplicates kept.
    headers        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- When the message failed, by the clock of the process that dead-lettered it.
    failed_at      timestamptz NOT NULL,
    -- `FailureStage`, as serde names it.
    stage          text        NOT NULL
        CHECK (stage IN ('handler', 'delivery', 'publish', 'compensation')),
    -- Where the message was found on the broker (stream and sequence, subject, entry id).
    source         text,
    -- The transport's headers as received, when they could not be read as text.
    raw_headers    bytea
);
CREATE INDEX IF NOT EXISTS dead_letters_failed_at ON dead_letters (failed_at, id);
CREATE INDEX IF NOT EXISTS dead_letters_message ON dead_letters (message, id);

-- Event streams (`PostgresEventStore`): each stream's version, the row appends contend on.
-- An append updates it only if it is still at the version the writer expected (or inserts it
-- for a new stream), so a stale append finds no row and writes nothing, without an error that
-- would abort the transaction it runs in.
CREATE TABLE IF NOT EXISTS event_streams (
    stream  text   PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0)
);

-- The events, gap-free per stream from version 1.
CREATE TABLE IF NOT EXISTS events (
    stream         text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    -- The bytes given, as given (not jsonb, which would reorder keys and drop whitespace).
    payload        bytea       NOT NULL,
    correlation_id uuid,
    causation_id   uuid,
    -- The database's clock at the start of the appending transaction.
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    -- The global position `read_all` follows: NULL until the appending transaction commits,
    -- then assigned in commit order (see `events_assign_position`).
    position       bigint      UNIQUE,
    -- A unique violation here (a writer that bypassed `event_streams`) is a conflict too.
    PRIMARY KEY (stream, version)
);

CREATE SEQUENCE IF NOT EXISTS events_position AS bigint OWNED BY events.position;

-- Gives a committing transaction's events their global positions. A position drawn when a row
-- is inserted (a plain bigserial) follows insert order, not commit order: a reader could see
-- position 11 committed while 10 is still in flight, move past it and never see 10. Drawn here,
-- at commit, under a lock held until the commit is visible, positions are visible in order: once
-- a reader sees a position, every smaller position is visible or will never exist.
-- `SET search_path FROM CURRENT` keeps the names below in the migrated schema whatever the
-- search path of the committing connection.
CREATE OR REPLACE FUNCTION events_assign_position() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    -- Keyed by this table (one lock per schema); re-entrant within the transaction, so only
    -- its first event waits. The first key, 'catg' in ASCII, keeps clear of other users'.
    PERFORM pg_advisory_xact_lock(1667331175, TG_RELID::integer);
    UPDATE events SET position = nextval('events_position') WHERE event_id = NEW.event_id;
    RETURN NULL;
END
$$;

-- Deferred: runs as the transaction commits, once per event, in insert order.
DROP TRIGGER IF EXISTS events_assign_position ON events;
CREATE CONSTRAINT TRIGGER events_assign_position AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION events_assign_position();

-- Saga instances (`PostgresSagaStore`).
CREATE TABLE IF NOT EXISTS sagas (
    id         uuid        PRIMARY KEY,
    saga       text        NOT NULL,
    -- `SagaStatus::as_str`, beside the state so unfinished instances are found without it.
    status     text        NOT NULL
        CHECK (status IN ('Running', 'Compensating', 'Completed', 'Compensated', 'Failed')),
    data       bytea       NOT NULL,
    -- The `SagaState` as JSON, as given (bytea, byte for byte).
    state      bytea       NOT NULL,
    -- Saves so far, from 1: the optimistic concurrency check.
    version    bigint      NOT NULL CHECK (version > 0),
    -- The database's clock at the last save.
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- What a recovery loop asks for: a saga's unfinished instances, longest untouched first.
CREATE INDEX IF NOT EXISTS sagas_unfinished ON sagas (saga, updated_at, id)
    WHERE status IN ('Running', 'Compensating');
