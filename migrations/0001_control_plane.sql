-- The control plane: workspaces, keys, response engines, agents, numbers, calls.
-- Written in the subset of SQL that SQLite and PostgreSQL share (TEXT, BIGINT, BOOLEAN,
-- DOUBLE PRECISION, no AUTOINCREMENT, no JSON operators), so one file serves both stores.
-- Configuration documents are stored as JSON text: the store does not interpret them.

CREATE TABLE workspaces (
    workspace_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    settings TEXT NOT NULL
);

CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    name TEXT NOT NULL,
    -- SHA-256 of the secret, hex. Keys are 128-bit random, so a fast hash is enough.
    key_hash TEXT NOT NULL UNIQUE,
    -- The first characters of the secret, so a person can tell keys apart in `keys list`.
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE retell_llms (
    llm_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    created_at BIGINT NOT NULL
);
CREATE INDEX retell_llms_by_workspace ON retell_llms (workspace_id, created_at, llm_id);

CREATE TABLE retell_llm_versions (
    llm_id TEXT NOT NULL REFERENCES retell_llms (llm_id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    is_published BOOLEAN NOT NULL,
    base_version BIGINT,
    last_modification_timestamp BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (llm_id, version)
);

CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    created_at BIGINT NOT NULL
);
CREATE INDEX agents_by_workspace ON agents (workspace_id, created_at, agent_id);

CREATE TABLE agent_versions (
    agent_id TEXT NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    is_published BOOLEAN NOT NULL,
    base_version BIGINT,
    last_modification_timestamp BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE phone_numbers (
    phone_number TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    phone_number_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_modification_timestamp BIGINT NOT NULL,
    -- Never returned by the API; read only to answer a trunk's digest challenge.
    auth_password TEXT,
    document TEXT NOT NULL
);
CREATE INDEX phone_numbers_by_workspace ON phone_numbers (workspace_id, created_at, phone_number);

CREATE TABLE calls (
    call_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    call_type TEXT NOT NULL,
    direction TEXT NOT NULL,
    call_status TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    agent_version BIGINT NOT NULL,
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    start_timestamp BIGINT,
    end_timestamp BIGINT,
    duration_ms BIGINT,
    disconnection_reason TEXT,
    batch_call_id TEXT,
    idempotency_key TEXT,
    document TEXT NOT NULL
);
CREATE INDEX calls_by_workspace ON calls (workspace_id, created_at, call_id);
CREATE INDEX calls_by_idempotency_key ON calls (workspace_id, idempotency_key);
