-- Two more outcomes (issue 17): 'voicemail' (nobody answered, the voicemail
-- took the call: a missed call, called back) and 'forwarded' (the phone system
-- sent the call out before anyone answered: handled elsewhere).
ALTER TABLE calls DROP CONSTRAINT calls_outcome_check;
ALTER TABLE calls ADD CONSTRAINT calls_outcome_check CHECK (outcome IN
    ('answered', 'missed', 'busy', 'rejected', 'failed', 'voicemail', 'forwarded'));
