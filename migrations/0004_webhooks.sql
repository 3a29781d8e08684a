-- Webhooks. The workspace's webhook key is the one API key whose secret is kept (API keys
-- are otherwise stored hashed): the official SDKs verify a webhook's HMAC with the key itself.
CREATE TABLE webhook_keys (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (workspace_id),
    key_id TEXT NOT NULL REFERENCES api_keys (key_id),
    secret TEXT NOT NULL
);

-- The outbox: an event is inserted in the transaction that changes its call's state, with
-- its target and its body frozen, and leaves only by being delivered or given up.
CREATE TABLE webhook_events (
    event_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    call_id TEXT NOT NULL,
    -- Strictly increasing creation stamp (µs): the order of a call's events.
    created_at BIGINT NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    -- The exact JSON text sent (and signed) on every attempt.
    body TEXT NOT NULL,
    -- pending | delivered | failed
    state TEXT NOT NULL,
    -- Attempts in all, and since the last (re)delivery request: the retry budget.
    attempts BIGINT NOT NULL,
    series_attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error TEXT,
    delivered_at BIGINT
);
CREATE INDEX webhook_events_due ON webhook_events (state, next_attempt_at);
CREATE INDEX webhook_events_by_call ON webhook_events (call_id, created_at);

CREATE TABLE webhook_attempts (
    event_id TEXT NOT NULL REFERENCES webhook_events (event_id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    PRIMARY KEY (event_id, attempt)
);
