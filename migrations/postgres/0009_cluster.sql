-- Several Fiche nodes on one database (issue 15). Used only when a [cluster]
-- table is configured; SQLite has the same tables for one schema, unused.

-- Each node's heartbeat, for `fiche cluster status` and to refuse a second
-- node started under a name that is alive.
CREATE TABLE cluster_nodes (
    node TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    http_addr TEXT NOT NULL
);

-- Work that must run on one node at a time (an AMI connection, the ticket
-- writer, a webhook target's delivery): held while `expires_at` is ahead and
-- renewed by its holder; anyone may take it once it has expired.
CREATE TABLE cluster_leases (
    name TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- The events every node's sources produced, in one order (`seq`), for the
-- other nodes' hubs and for the one ticket writer. Appends are serialised by
-- an advisory lock, so that `seq` order is commit order and a reader's
-- "everything after seq" never skips a row committed late. A call event
-- carries `call_id` and a `dedupe` key (its kind and occurrence in the call):
-- the same event from two nodes fed the same stream is stored once.
-- `body` is JSON: {"call": CallEvent} or {"ticket": TicketSummary}.
CREATE TABLE cluster_events (
    seq BIGSERIAL PRIMARY KEY,
    node TEXT NOT NULL,
    call_id TEXT,
    dedupe TEXT,
    at TIMESTAMPTZ NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX cluster_events_once ON cluster_events (call_id, dedupe);
CREATE INDEX cluster_events_at ON cluster_events (at);

-- How far each consumer of the log has written (the ticket writer, each
-- webhook target), moved in the same transaction as what it wrote.
CREATE TABLE cluster_cursors (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- Requests for the holder of a lease (click-to-call through the node that
-- holds the AMI connection), and their answers.
CREATE TABLE cluster_commands (
    id BIGSERIAL PRIMARY KEY,
    lease TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    taken_by TEXT,
    answer TEXT,
    answered_at TIMESTAMPTZ
);
CREATE INDEX cluster_commands_open ON cluster_commands (lease, id) WHERE taken_by IS NULL;
