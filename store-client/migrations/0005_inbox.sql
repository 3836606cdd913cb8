-- The notification inbox (PROTOCOL.md v1.1, §Notifications): every notification a producer
-- sent, whatever its disposition, with its state. Times are Unix ms; null: not yet.
CREATE TABLE IF NOT EXISTS notifications (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    category       TEXT NOT NULL,
    priority       TEXT NOT NULL,
    title          TEXT NOT NULL,
    body           TEXT NOT NULL,
    data           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    disposition    TEXT NOT NULL,
    seen_at_ms     BIGINT,
    read_at_ms     BIGINT,
    archived_at_ms BIGINT
);
-- Pages, newest first, by keyset.
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, created_at_ms DESC, id DESC);
-- The two counts, each an index range of only what it counts.
CREATE INDEX IF NOT EXISTS notifications_unread ON notifications (user_id)
    WHERE archived_at_ms IS NULL AND read_at_ms IS NULL;
CREATE INDEX IF NOT EXISTS notifications_unseen ON notifications (user_id)
    WHERE archived_at_ms IS NULL AND seen_at_ms IS NULL;
CREATE INDEX IF NOT EXISTS notifications_by_age ON notifications (created_at_ms);
