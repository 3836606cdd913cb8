-- Finalised turns, and their traces apart. Plain SQL that SQLite, PostgreSQL and the
-- Postgres-wire databases (CockroachDB, YugabyteDB, Citus) all run.
CREATE TABLE IF NOT EXISTS turns (
    turn_id         TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    status          TEXT NOT NULL,
    text            TEXT NOT NULL,
    truncated       BOOLEAN NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    completed_at_ms BIGINT NOT NULL,
    meta            TEXT NOT NULL,
    content_hash    TEXT NOT NULL
);

-- History pages: newest first within a conversation, keyset on (created_at_ms, turn_id).
CREATE INDEX IF NOT EXISTS turns_by_conversation
    ON turns (conversation_id, created_at_ms DESC, turn_id DESC);

-- Retention sweeps.
CREATE INDEX IF NOT EXISTS turns_by_completion ON turns (completed_at_ms);

CREATE TABLE IF NOT EXISTS turn_traces (
    turn_id  TEXT NOT NULL,
    position INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    data     TEXT NOT NULL,
    PRIMARY KEY (turn_id, position)
);
