-- The Odoo connector (issue 13). Unused when no [odoo] table is configured.

-- Small named values the connector keeps across restarts: the partner poll's cursor
-- ("<write_date>|<id>" of the last change applied), so that changes made in Odoo
-- while Fiche was stopped are read at the next start.
CREATE TABLE odoo_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- Which Odoo record each Fiche object became (`kind`: 'ticket', 'activity'), so that
-- a delivery replayed after a crash or a retry updates that record instead of
-- creating a second one.
CREATE TABLE odoo_links (
    kind       TEXT NOT NULL,
    fiche_id   TEXT NOT NULL,
    odoo_id    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, fiche_id)
) STRICT;
