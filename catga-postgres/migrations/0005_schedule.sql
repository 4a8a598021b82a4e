-- Scheduled messages (`PostgresScheduleStore`): envelopes kept until they are due, then claimed
-- and fired by the scheduler's leader. Unqualified names, as in 0001: `catga_postgres::migrate`
-- runs this with the configured schema first on the search path, so the tables land in that
-- schema.

-- One row per scheduled message: when it is due, every field of its envelope, and the claim
-- of the leader firing it. A row is claimable once `due` has come and it is not claimed, or its
-- claim ran out, by the database's clock (`now()`). Removed when fired or cancelled.
CREATE TABLE IF NOT EXISTS scheduled_messages (
    -- The envelope's message id, which identifies the scheduled message too.
    id             uuid        PRIMARY KEY,
    -- When it is due, to the microsecond (the scheduling process's clock said so).
    due            timestamptz NOT NULL,
    -- The envelope, as the outbox keeps one: wire name (compared byte by byte, as every
    -- identifying key; see 0003), `MessageKind::as_str`, the ids, Unix milliseconds.
    name           text COLLATE "C" NOT NULL,
    kind           text        NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    timestamp_ms   bigint      NOT NULL,
    deadline_ms    bigint,
    traceparent    text,
    tracestate     text,
    -- The user headers, `[[name, value], …]`, in order, duplicates kept (as `dead_letters`).
    headers        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- The payload's content type (`WireFormat::content_type`).
    format         text        NOT NULL,
    payload        bytea       NOT NULL,
    -- The running or last claim: until when it holds, by the database's clock, and the fencing
    -- token of the leader that took it. NULL until first claimed.
    claimed_until  timestamptz,
    claimed_by     bigint,
    -- What the store never writes, refused so it is never read.
    CONSTRAINT scheduled_messages_due_finite CHECK (isfinite(due)),
    CONSTRAINT scheduled_messages_kind CHECK (kind IN ('command', 'query', 'event')),
    CONSTRAINT scheduled_messages_format
        CHECK (format IN ('application/json', 'application/msgpack')),
    CONSTRAINT scheduled_messages_times CHECK (timestamp_ms >= 0 AND deadline_ms >= 0),
    -- An array of two-string arrays.
    CONSTRAINT scheduled_messages_headers CHECK (
        jsonb_typeof(headers) = 'array'
        AND NOT headers @? 'strict $[*] ? (@.type() != "array" || @.size() != 2)'
        AND NOT headers @? 'strict $[*][*] ? (@.type() != "string")'
    ),
    CONSTRAINT scheduled_messages_claim CHECK (
        (claimed_until IS NULL) = (claimed_by IS NULL)
        AND isfinite(claimed_until)
        AND claimed_by >= 0
    )
);

-- What a claim scans: the earliest due first, ties by id (the order it takes them in), and
-- what `next_due` reads the minimum of.
CREATE INDEX IF NOT EXISTS scheduled_messages_due ON scheduled_messages (due, id);

-- The fencing floor of the schema's scheduled messages: the highest fencing token a claim or a
-- firing carried. One row at most (`id` can only be true); created by the first claim. A claim
-- or firing raises it in the statement that does the work, under the row's lock, and is
-- refused when it carries a lower token: a leader paused past its lease can neither take nor
-- finish messages once a newer leader has.
CREATE TABLE IF NOT EXISTS schedule_fence (
    id    boolean PRIMARY KEY DEFAULT true,
    token bigint  NOT NULL,
    CONSTRAINT schedule_fence_one_row CHECK (id),
    CONSTRAINT schedule_fence_token CHECK (token >= 0)
);
