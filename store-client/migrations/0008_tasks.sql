-- Tasks that reached a terminal state (PROTOCOL.md v1.1, §Tasks), stored once through the
-- outbox. The task object without its artifacts is `doc` (JSON, so any text in it is safe on
-- both databases); the columns are what the task hub filters and orders by.
CREATE TABLE IF NOT EXISTS tasks (
    task_id       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    context_id    TEXT NOT NULL,
    state         TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    doc           TEXT NOT NULL,
    content_hash  TEXT NOT NULL
);
-- The hub's pages, newest status change first, by keyset; with and without a context.
CREATE INDEX IF NOT EXISTS tasks_by_user ON tasks (user_id, updated_at_ms DESC, seq DESC, task_id DESC);
CREATE INDEX IF NOT EXISTS tasks_by_context
    ON tasks (user_id, context_id, updated_at_ms DESC, seq DESC, task_id DESC);

-- Retention sweeps.
CREATE INDEX IF NOT EXISTS tasks_by_update ON tasks (updated_at_ms);

CREATE TABLE IF NOT EXISTS task_artifacts (
    task_id  TEXT NOT NULL,
    position INTEGER NOT NULL,
    doc      TEXT NOT NULL,
    PRIMARY KEY (task_id, position)
);
