-- Fiche initial schema, SQLite dialect.
--
-- Conventions (kept identical in migrations/postgres):
--   * Timestamps are UTC, stored as RFC 3339 TEXT ("2026-11-23T22:58:24.123456+00:00"),
--     which is what sqlx's chrono support writes and reads; all writers use the UTC
--     offset, so text order is time order. Fiche truncates them to microseconds so both
--     backends round-trip the same value.
--   * Row ids are INTEGER (rowid aliases), except calls, whose id is the UUID derived from
--     (source, source_key) and is stored as hyphenated TEXT.
--   * JSON (customer tags, ticket event bodies, webhook payloads) is TEXT holding JSON.
--   * Tables are STRICT so a wrong type is an error instead of a silent conversion.
-- Never edit this file once released: add a new numbered migration instead.

-- The customer file. `external_ref` is the id in the system customers came from
-- (accounting, CRM, spreadsheet); unique when set so re-imports merge.
CREATE TABLE customers (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    company         TEXT,
    email           TEXT,
    address         TEXT,
    notes           TEXT,
    tags            TEXT NOT NULL DEFAULT '[]',
    external_ref    TEXT,
    -- Denormalised time of the latest call with this customer, so that the matcher can
    -- rank customers sharing a number without reading the calls table.
    last_contact_at TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE UNIQUE INDEX customers_external_ref_key ON customers (external_ref) WHERE external_ref IS NOT NULL;
-- Emails are matched case-insensitively when imports merge duplicates.
CREATE INDEX customers_email_idx ON customers (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX customers_name_idx ON customers (name);

-- A customer's numbers: `raw` exactly as typed, `e164` as normalised by the matcher
-- (NULL when the number could not be normalised; the matcher then falls back on digits).
CREATE TABLE customer_phones (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    e164        TEXT,
    raw         TEXT NOT NULL,
    label       TEXT,
    UNIQUE (customer_id, e164)
) STRICT;

CREATE INDEX customer_phones_e164_idx ON customer_phones (e164);

-- People who log in: agents, supervisors, admins. `password_hash` is an argon2 PHC string.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    login         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    password_hash TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- Logins are unique whatever their case: "Claire" and "claire" are the same person.
CREATE UNIQUE INDEX users_login_key ON users (lower(login));

-- Which agent owns which extension; an extension belongs to at most one user.
CREATE TABLE user_extensions (
    extension TEXT PRIMARY KEY,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE
) STRICT;

CREATE INDEX user_extensions_user_idx ON user_extensions (user_id);

-- Browser sessions (hub issue). `id` is a hash of the cookie value, never the value itself.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- One row per call, whatever the source. (source, source_key) is unique so a replayed
-- or re-read event stream never creates a second row. `remote_e164` is the outside
-- party normalised (caller for inbound, callee for outbound) so callbacks can find
-- the calls to and from a number.
CREATE TABLE calls (
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
    outcome         TEXT CHECK (outcome IN ('answered', 'missed', 'busy', 'rejected', 'failed')),
    cause           TEXT,
    updated_at      TEXT NOT NULL,
    UNIQUE (source, source_key)
) STRICT;

CREATE INDEX calls_started_idx ON calls (started_at);
CREATE INDEX calls_customer_idx ON calls (customer_id, started_at);
CREATE INDEX calls_remote_idx ON calls (remote_e164, started_at);
CREATE INDEX calls_agent_idx ON calls (agent_extension, started_at);

-- Work items. A call creates at most one ticket (`call_id` unique); later calls
-- (repeated missed calls merged into one callback) are linked through ticket_events.
-- `phone_e164` is the number to call back, also for callers who are not customers yet.
-- `priority`: higher is more urgent, 0 is normal.
CREATE TABLE tickets (
    id               INTEGER PRIMARY KEY,
    call_id          TEXT REFERENCES calls (id) ON DELETE SET NULL,
    customer_id      INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    phone_e164       TEXT,
    kind             TEXT NOT NULL CHECK (kind IN ('call', 'callback')),
    status           TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    subject          TEXT NOT NULL DEFAULT '',
    reason           TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    assignee_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    assignee_group   TEXT,
    due_at           TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    closed_at        TEXT
) STRICT;

CREATE UNIQUE INDEX tickets_call_key ON tickets (call_id) WHERE call_id IS NOT NULL;
CREATE INDEX tickets_open_due_idx ON tickets (status, due_at);
CREATE INDEX tickets_customer_idx ON tickets (customer_id, status);
CREATE INDEX tickets_assignee_idx ON tickets (assignee_user_id, status);
CREATE INDEX tickets_phone_idx ON tickets (phone_e164, status);

-- A ticket's history: notes, status changes, linked calls... `kind` is open-ended
-- ("note", "status", "call", "assign", ...); `body` is JSON whose shape depends on `kind`.
CREATE TABLE ticket_events (
    id             INTEGER PRIMARY KEY,
    ticket_id      INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at             TEXT NOT NULL,
    author_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    kind           TEXT NOT NULL,
    call_id        TEXT REFERENCES calls (id) ON DELETE SET NULL,
    body           TEXT NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX ticket_events_ticket_idx ON ticket_events (ticket_id, at);
CREATE INDEX ticket_events_call_idx ON ticket_events (call_id) WHERE call_id IS NOT NULL;

-- Tokens of the inbound CTI webhook (CTI issue): only a hash is kept.
CREATE TABLE cti_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;

-- Outbound webhook deliveries waiting or being retried (CTI issue). The application
-- bounds its size; `ordering_key` (usually the call id) keeps per-call order.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY,
    target          TEXT NOT NULL,
    ordering_key    TEXT,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT
) STRICT;

CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (target, next_attempt_at, id);
