-- A deletion is scoped to one user's turns of a conversation (user_id = '' for an operator's
-- deletion of everyone's turns: user ids are never empty). The old table's rows were deletions
-- of everyone's turns.
CREATE TABLE IF NOT EXISTS conversation_deletions (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    deleted_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
INSERT INTO conversation_deletions (conversation_id, user_id, deleted_at_ms)
    SELECT conversation_id, '', deleted_at_ms FROM deleted_conversations;
DROP TABLE deleted_conversations;

-- PostgreSQL's TEXT cannot hold NUL: a text that contains one is kept as its JSON string
-- literal, flagged here (both backends do the same, so a row reads alike on either).
ALTER TABLE turns ADD COLUMN text_json BOOLEAN NOT NULL DEFAULT FALSE;
