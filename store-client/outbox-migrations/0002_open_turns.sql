-- Turns streaming now, recorded at their start (and their text checkpointed now and then), so
-- that after a crash of the process they are ended `failed` and stored instead of vanishing.
CREATE TABLE IF NOT EXISTS open_turns (
    turn_id         TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    meta            TEXT NOT NULL,
    text            TEXT NOT NULL DEFAULT '',
    truncated       BOOLEAN NOT NULL DEFAULT FALSE,
    next_index      BIGINT NOT NULL DEFAULT 0
);
