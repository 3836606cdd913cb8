-- Each user's unread and unseen counts, kept beside the inbox so reading them costs one row, not
-- a count over the user's notifications (every delivered notification carries unread_count). A
-- missing row is recounted from the inbox when next needed; marks and purges drop it.
CREATE TABLE IF NOT EXISTS notification_counts (
    user_id TEXT PRIMARY KEY,
    unread  BIGINT NOT NULL,
    unseen  BIGINT NOT NULL
);
