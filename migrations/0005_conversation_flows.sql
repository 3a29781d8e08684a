-- Conversation-flow response engines (M6): versioned like Retell LLMs.
CREATE TABLE conversation_flows (
    conversation_flow_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    created_at BIGINT NOT NULL
);
CREATE INDEX conversation_flows_by_workspace ON conversation_flows (workspace_id, created_at, conversation_flow_id);

CREATE TABLE conversation_flow_versions (
    conversation_flow_id TEXT NOT NULL REFERENCES conversation_flows (conversation_flow_id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    is_published BOOLEAN NOT NULL,
    base_version BIGINT,
    last_modification_timestamp BIGINT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (conversation_flow_id, version)
);
