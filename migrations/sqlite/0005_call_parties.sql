-- Who took a call, for the call log and the call's ticket ("who took that call
-- yesterday?"): the phones that rang, the first one to answer, and each transfer.
-- `rang` is a JSON array of extensions in the order they rang; `transfers` a JSON
-- array of {"kind", "by", "transferee", "to"}. NULL until the call is written with them.
ALTER TABLE calls ADD COLUMN rang TEXT;
ALTER TABLE calls ADD COLUMN answered_by TEXT;
ALTER TABLE calls ADD COLUMN transfers TEXT;
