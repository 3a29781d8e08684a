-- Batch campaigns. Tasks are queued durably; a task's call is created in the same
-- transaction that marks the task called, so a restart never dials a task twice.
CREATE TABLE batch_calls (
    batch_call_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id),
    name TEXT NOT NULL,
    from_number TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    scheduled_timestamp BIGINT NOT NULL,
    reserved_concurrency BIGINT NOT NULL,
    -- The canonical call_time_window as JSON text, or NULL for "any time".
    call_time_window TEXT,
    total_task_count BIGINT NOT NULL,
    -- scheduled | running | completed | cancelled
    status TEXT NOT NULL
);
CREATE INDEX batch_calls_by_workspace ON batch_calls (workspace_id, created_at, batch_call_id);

CREATE TABLE batch_tasks (
    batch_call_id TEXT NOT NULL REFERENCES batch_calls (batch_call_id) ON DELETE CASCADE,
    task_index BIGINT NOT NULL,
    -- pending | called | failed
    state TEXT NOT NULL,
    call_id TEXT,
    error TEXT,
    -- The task as submitted (JSON).
    document TEXT NOT NULL,
    PRIMARY KEY (batch_call_id, task_index)
);
