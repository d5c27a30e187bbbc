-- Two more outcomes (issue 17): 'voicemail' (nobody answered, the voicemail
-- took the call: a missed call, called back) and 'forwarded' (the phone system
-- sent the call out before anyone answered: handled elsewhere). SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt
-- (https://sqlite.org/lang_altertable.html, "other kinds of table schema
-- changes"); rows, ids and indexes are kept. sqlx runs a migration in a
-- transaction, where foreign keys cannot be turned off: dropping the old table
-- sets the tickets' and ticket events' call_id to NULL (ON DELETE SET NULL),
-- so those links are saved first and put back.
CREATE TEMP TABLE keep_ticket_calls AS
    SELECT id, call_id FROM tickets WHERE call_id IS NOT NULL;
CREATE TEMP TABLE keep_event_calls AS
    SELECT id, call_id FROM ticket_events WHERE call_id IS NOT NULL;
CREATE TABLE calls_new (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL CHECK (source IN ('hep', 'ami', 'cti')),
    source_key      TEXT NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller_number   TEXT,
    caller_name     TEXT,
    caller_withheld INTEGER NOT NULL DEFAULT 0 CHECK (caller_withheld IN (0, 1)),
    callee_number   TEXT,
    remote_e164     TEXT,
    agent_extension TEXT,
    queue           TEXT,
    customer_id     INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    started_at      TEXT NOT NULL,
    answered_at     TEXT,
    ended_at        TEXT,
    outcome         TEXT CHECK (outcome IN ('answered', 'missed', 'busy', 'rejected', 'failed',
                                            'voicemail', 'forwarded')),
    cause           TEXT,
    updated_at      TEXT NOT NULL,
    rang            TEXT,
    answered_by     TEXT,
    transfers       TEXT,
    UNIQUE (source, source_key)
) STRICT;
INSERT INTO calls_new (id, source, source_key, direction, caller_number, caller_name,
    caller_withheld, callee_number, remote_e164, agent_extension, queue, customer_id,
    started_at, answered_at, ended_at, outcome, cause, updated_at, rang, answered_by, transfers)
SELECT id, source, source_key, direction, caller_number, caller_name,
    caller_withheld, callee_number, remote_e164, agent_extension, queue, customer_id,
    started_at, answered_at, ended_at, outcome, cause, updated_at, rang, answered_by, transfers
FROM calls;
DROP TABLE calls;
ALTER TABLE calls_new RENAME TO calls;
CREATE INDEX calls_started_idx ON calls (started_at);
CREATE INDEX calls_customer_idx ON calls (customer_id, started_at);
CREATE INDEX calls_remote_idx ON calls (remote_e164, started_at);
CREATE INDEX calls_agent_idx ON calls (agent_extension, started_at);
UPDATE tickets SET call_id = (SELECT k.call_id FROM keep_ticket_calls k WHERE k.id = tickets.id)
    WHERE id IN (SELECT id FROM keep_ticket_calls);
UPDATE ticket_events
    SET call_id = (SELECT k.call_id FROM keep_event_calls k WHERE k.id = ticket_events.id)
    WHERE id IN (SELECT id FROM keep_event_calls);
DROP TABLE keep_ticket_calls;
DROP TABLE keep_event_calls;
