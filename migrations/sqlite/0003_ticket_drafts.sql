-- What an agent saved on a call's card before the call had its ticket (a note typed
-- while the phone rang). The ticket writer moves these rows onto the call's ticket in
-- the transaction that gives the call its ticket, then deletes them. There is no
-- foreign key to calls: the page can save before the writer has stored the call.
-- Each column left NULL leaves that field of the ticket alone.
CREATE TABLE ticket_drafts (
    id             INTEGER PRIMARY KEY,
    call_id        TEXT NOT NULL,
    author_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    at             TEXT NOT NULL,
    note           TEXT,
    reason         TEXT,
    priority       INTEGER,
    due_at         TEXT,
    status         TEXT CHECK (status IN ('open', 'closed'))
) STRICT;

CREATE INDEX ticket_drafts_call_idx ON ticket_drafts (call_id);
