-- A delivery's id is its X-Fiche-Delivery header, on which receivers
-- deduplicate: it must never be handed out twice. Without AUTOINCREMENT, SQLite
-- gives the id of a delivered (deleted) newest row to the next push, so an
-- idle target saw ids 1, 2, 1, 2… and a receiver dropped real deliveries as
-- repeats. The table is rebuilt with AUTOINCREMENT; waiting rows keep their ids.
CREATE TABLE webhook_outbox_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    target          TEXT NOT NULL,
    ordering_key    TEXT,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT
) STRICT;

INSERT INTO webhook_outbox_new (id, target, ordering_key, event_type, payload, created_at,
                                attempts, next_attempt_at, last_error)
SELECT id, target, ordering_key, event_type, payload, created_at, attempts, next_attempt_at,
       last_error
FROM webhook_outbox;

DROP TABLE webhook_outbox;
ALTER TABLE webhook_outbox_new RENAME TO webhook_outbox;

CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (target, next_attempt_at, id);
