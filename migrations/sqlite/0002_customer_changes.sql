-- The customer change log: every write to the customer file (API, `fiche import`, any
-- Fiche process or node) adds a row naming the range of customer ids it touched, in the
-- same transaction. Running servers poll it to keep their in-memory caller index and
-- name cache current without a restart (`server::customers_sync`); a deleted customer
-- shows up as a logged id that no longer exists.
--
-- `changed_at` is the database's clock in microseconds since 1970, taken when the row
-- is written (just before the commit); readers re-read a window of it, because on
-- PostgreSQL ids and times do not commit in order. Old rows are pruned by the servers.
CREATE TABLE customer_changes (
    id         INTEGER PRIMARY KEY,
    first_id   INTEGER NOT NULL,
    last_id    INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
        DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)),
    CHECK (first_id <= last_id)
) STRICT;

CREATE INDEX customer_changes_changed_at_idx ON customer_changes (changed_at, id);
