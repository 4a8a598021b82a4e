-- Leases with fencing tokens (`PostgresLeaseStore`): who may do the work only one instance may do.
-- Unqualified names, as in 0001: `catga_postgres::migrate` runs this with the configured schema
-- first on the search path, so the table lands in that schema.

-- One row per lease name, kept after a release or an expiry so that its token only grows: the
-- next grant takes `token + 1` under the row's lock. A lease is held while `holder` is set and
-- `expires_at` is in the future, by the database's clock (`now()`), so instances need not agree
-- on the time. A release sets both to NULL; an expiry leaves them as they were.
CREATE TABLE IF NOT EXISTS leases (
    -- Compared byte by byte, as every identifying key (see 0003).
    name       text COLLATE "C" PRIMARY KEY,
    -- Who holds it, or held it last if it ran out; NULL once released.
    holder     text,
    -- The fencing token of the last grant: 1 for the first, one more for each after it.
    token      bigint      NOT NULL,
    -- The end of the running grant (or of the last one, if it ran out); NULL once released.
    expires_at timestamptz,
    -- What the store never writes, refused so it is never read: a token below 1, a holder
    -- without an expiry or the other way round, an expiry at infinity.
    CONSTRAINT leases_token_positive CHECK (token > 0),
    CONSTRAINT leases_held_until CHECK ((holder IS NULL) = (expires_at IS NULL)),
    CONSTRAINT leases_expiry_finite CHECK (isfinite(expires_at))
);
