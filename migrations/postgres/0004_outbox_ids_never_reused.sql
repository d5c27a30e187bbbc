-- A delivery's id is its X-Fiche-Delivery header, on which receivers
-- deduplicate: it must never be handed out twice. SQLite needed its table
-- rebuilt with AUTOINCREMENT for that (see migrations/sqlite/0004); here the
-- identity column already never reuses a value, so nothing changes. The file
-- keeps both backends' migration numbers in step.
SELECT 1;
