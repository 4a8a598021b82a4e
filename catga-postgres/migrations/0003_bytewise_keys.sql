-- Keys that identify things (ordering keys, handler and message names, stream and saga ids)
-- compare byte by byte (`COLLATE "C"`), whatever the database's locale.
--
-- Nothing sorts them for a person, so a linguistic collation buys nothing, and it costs: every
-- index probe on such a key calls the C library's `strcoll` instead of comparing bytes. The
-- relay checks each row it claims against the ordering-key index; with bytewise keys a claim
-- of 256 rows took 1.85 ms instead of 2.3 ms here (C.UTF-8; more with en_US.UTF-8). It also
-- makes equality and order independent of the operating system's locale data, which can
-- change under an index when the OS is upgraded.

ALTER TABLE outbox ALTER COLUMN ordering_key TYPE text COLLATE "C";
ALTER TABLE inbox ALTER COLUMN handler TYPE text COLLATE "C";
ALTER TABLE idempotency
    ALTER COLUMN message TYPE text COLLATE "C",
    ALTER COLUMN handler TYPE text COLLATE "C",
    ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE dead_letters ALTER COLUMN message TYPE text COLLATE "C";
ALTER TABLE event_streams ALTER COLUMN stream TYPE text COLLATE "C";
ALTER TABLE events ALTER COLUMN stream TYPE text COLLATE "C";
ALTER TABLE sagas ALTER COLUMN saga TYPE text COLLATE "C";
