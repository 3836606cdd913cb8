-- The push outbox (PROTOCOL.md v1.1, §Notifications, Push): webhook calls waiting to be made
-- or retried, kept in the store so a restart loses none. `push_key` is the Idempotency-Key,
-- the same on every retry. `state`: pending, sent, failed (final).
CREATE TABLE IF NOT EXISTS push_outbox (
    push_key        TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    notification_id TEXT,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    due_at_ms       BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    retracted       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS push_outbox_due ON push_outbox (state, due_at_ms);
CREATE INDEX IF NOT EXISTS push_outbox_by_user ON push_outbox (user_id, kind, retracted);
