-- The embedded outbox: finalised turns waiting to be stored, kept in a SQLite file beside the
-- embedded store so a turn that ended survives a store outage and a gateway restart.
CREATE TABLE IF NOT EXISTS outbox (
    turn_id         TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    -- The FinalTurn as JSON: everything the store needs, nothing read from elsewhere.
    payload         TEXT NOT NULL,
    enqueued_ms     BIGINT NOT NULL,
    -- When the next attempt may start (Unix ms); a claim moves it forward by the lease.
    due_ms          BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- Set aside: the store refused it for good (a conflicting turn with the same id).
    set_aside       BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX IF NOT EXISTS outbox_due ON outbox (set_aside, due_ms);
CREATE INDEX IF NOT EXISTS outbox_age ON outbox (set_aside, enqueued_ms);
