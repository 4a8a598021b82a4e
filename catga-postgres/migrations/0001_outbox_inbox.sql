-- catga's outbox and inbox. Unqualified names: `catga_postgres::migrate` runs this with the
-- configured schema first on the search path, so every table lands in that schema.

-- Events committed together with a handler's writes, waiting for the relay to publish them.
CREATE TABLE IF NOT EXISTS outbox (
    -- Commit order within one ordering key; the relay publishes a key's rows in this order.
    position       bigserial PRIMARY KEY,
    message_id     uuid        NOT NULL UNIQUE,
    -- Events with the same key are published in order (default: the correlation id).
    ordering_key   text        NOT NULL,
    name           text        NOT NULL,
    kind           text        NOT NULL,
    correlation_id uuid        NOT NULL,
    causation_id   uuid,
    -- When the event was published by its handler, Unix milliseconds (the envelope's).
    timestamp_ms   bigint      NOT NULL,
    traceparent    text,
    tracestate     text,
    -- The envelope's user headers, `[[name, value], …]`.
    headers        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- The payload's content type, e.g. `application/json`.
    format         text        NOT NULL,
    payload        bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Publications that failed, and the last failure: what an operator looks at.
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    -- Set instead of deleting the row when published rows are kept for a while.
    published_at   timestamptz
);

-- What the relay scans: unpublished rows by key and position.
CREATE INDEX IF NOT EXISTS outbox_unpublished
    ON outbox (ordering_key, position) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_unpublished_position
    ON outbox (position) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published_at
    ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Messages a handler already processed, written in the transaction of its effects.
CREATE TABLE IF NOT EXISTS inbox (
    message_id   uuid        NOT NULL,
    handler      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    -- A command's or query's reply, as JSON, returned again to a redelivery.
    reply        bytea,
    PRIMARY KEY (message_id, handler)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at);
