-- A user's notification preferences, the whole validated document as JSON (its shape is the
-- protocol's and is checked by the gateway; the store keeps it whole).
CREATE TABLE IF NOT EXISTS preferences (
    user_id       TEXT PRIMARY KEY,
    doc           TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
