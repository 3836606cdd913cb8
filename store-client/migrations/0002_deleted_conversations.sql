-- Conversations deleted by their owner: a turn of one created before its deletion, still on its
-- way through an outbox, is discarded instead of bringing the conversation back.
CREATE TABLE IF NOT EXISTS deleted_conversations (
    conversation_id TEXT PRIMARY KEY,
    deleted_at_ms   BIGINT NOT NULL
);
