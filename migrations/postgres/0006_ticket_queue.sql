-- The queue (or line, IVR) a call came through, as the phone system names it
-- (a CTI webhook's `queue`, Aircall's number name, Ringover's IVR), kept on the
-- call's ticket: a callback says which line the customer called. NULL when the
-- source names none.
ALTER TABLE tickets ADD COLUMN queue TEXT;
