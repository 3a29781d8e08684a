-- SIP bookkeeping of a call's leg. `dispatched_at` marks an outbound call handed to the dialer
-- (a restart must not dial it twice); `sip_call_id` is the leg's SIP Call-ID (shown as the
-- call's telephony identifier).
ALTER TABLE calls ADD COLUMN dispatched_at BIGINT;
ALTER TABLE calls ADD COLUMN sip_call_id TEXT;
