//! The notification inbox in the store: every notification with its `seen`, `read` and
//! `archived` times, paged newest first by keyset and counted from partial indexes, on both
//! backends (the SQL is shared; [`impl_inbox!`] instantiates it per database).

use async_trait::async_trait;

use crate::StoreError;

/// One notification as the inbox keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InboxRecord {
    pub id: String,
    pub user_id: String,
    pub category: String,
    /// `low` … `critical`.
    pub priority: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub created_at_ms: i64,
    /// `delivered`, `held`, `digested`, `suppressed`.
    pub disposition: String,
    pub seen_at_ms: Option<i64>,
    pub read_at_ms: Option<i64>,
    pub archived_at_ms: Option<i64>,
}

/// Which notifications a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxStatus {
    /// Everything not archived.
    All,
    Unread,
    Unseen,
    Read,
    Archived,
}

impl InboxStatus {
    fn condition(self) -> &'static str {
        match self {
            InboxStatus::All => "archived_at_ms IS NULL",
            InboxStatus::Unread => "archived_at_ms IS NULL AND read_at_ms IS NULL",
            InboxStatus::Unseen => "archived_at_ms IS NULL AND seen_at_ms IS NULL",
            InboxStatus::Read => "archived_at_ms IS NULL AND read_at_ms IS NOT NULL",
            InboxStatus::Archived => "archived_at_ms IS NOT NULL",
        }
    }
}

/// A state to mark notifications with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Seen,
    /// Also sets `seen`.
    Read,
    /// Clears only `read`.
    Unread,
    Archived,
}

impl Mark {
    /// `SET …` and the condition under which it changes anything ($1 user, $2 the time).
    fn update(self) -> &'static str {
        match self {
            Mark::Seen => "SET seen_at_ms = $2 WHERE user_id = $1 AND seen_at_ms IS NULL",
            Mark::Read => {
                "SET read_at_ms = $2, seen_at_ms = COALESCE(seen_at_ms, $2) WHERE user_id = $1 AND read_at_ms IS NULL"
            }
            Mark::Unread => {
                "SET read_at_ms = NULL WHERE user_id = $1 AND $2 = $2 AND read_at_ms IS NOT NULL"
            }
            Mark::Archived => {
                "SET archived_at_ms = $2 WHERE user_id = $1 AND archived_at_ms IS NULL"
            }
        }
    }
}

/// Which notifications a mark takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marked<'a> {
    Ids(&'a [String]),
    /// Everything created before this time (Unix ms).
    CreatedBefore(i64),
}

#[async_trait]
pub trait Inbox: Send + Sync {
    /// Keeps a notification (a repeated id changes nothing); returns the user's
    /// `(unread, unseen)` with it, read in the same transaction.
    async fn inbox_add(&self, n: &InboxRecord) -> Result<(u64, u64), StoreError>;

    /// Takes back a notification kept by a request that then lost a dedup race.
    async fn inbox_remove(&self, user_id: &str, id: &str) -> Result<(), StoreError>;

    /// A page, newest first, strictly older than `before` (`(created_at_ms, id)`).
    async fn inbox_page(
        &self,
        user_id: &str,
        status: InboxStatus,
        category: Option<&str>,
        limit: u32,
        before: Option<(i64, String)>,
    ) -> Result<Vec<InboxRecord>, StoreError>;

    /// `(unread, unseen)` among notifications not archived.
    async fn inbox_counts(&self, user_id: &str) -> Result<(u64, u64), StoreError>;

    /// Marks notifications of `user_id` at `at_ms`; returns how many changed state.
    async fn inbox_mark(
        &self,
        user_id: &str,
        which: Marked<'_>,
        mark: Mark,
        at_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Removes notifications created before `cutoff_ms` (retention).
    async fn inbox_purge(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}

pub const INSERT: &str = "INSERT INTO notifications (id, user_id, category, priority, title, body, data, \
     created_at_ms, disposition, seen_at_ms, read_at_ms, archived_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING";
pub const REMOVE: &str = "DELETE FROM notifications WHERE user_id = $1 AND id = $2";
/// Makes the user's counts row from the inbox when it is missing (the only full count; the
/// `WHERE` keeps the counts from being computed when the row is there).
pub const RECOUNT: &str = "INSERT INTO notification_counts (user_id, unread, unseen) SELECT $1, \
     (SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND archived_at_ms IS NULL AND read_at_ms IS NULL), \
     (SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND archived_at_ms IS NULL AND seen_at_ms IS NULL) \
     WHERE NOT EXISTS (SELECT 1 FROM notification_counts WHERE user_id = $1) \
     ON CONFLICT (user_id) DO NOTHING";
pub const COUNTS: &str = "SELECT unread, unseen FROM notification_counts WHERE user_id = $1";
/// One more notification not archived, neither read nor seen.
pub const COUNT_ONE: &str =
    "UPDATE notification_counts SET unread = unread + 1, unseen = unseen + 1 WHERE user_id = $1";
/// `$1` more notifications not archived, neither read nor seen.
pub const COUNT_MANY: &str =
    "UPDATE notification_counts SET unread = unread + $1, unseen = unseen + $1 WHERE user_id = $2";
pub const FORGET_COUNTS: &str = "DELETE FROM notification_counts WHERE user_id = $1";
pub const FORGET_PURGED_COUNTS: &str = "DELETE FROM notification_counts WHERE user_id IN \
     (SELECT DISTINCT user_id FROM notifications WHERE created_at_ms < $1)";
pub const PURGE: &str = "DELETE FROM notifications WHERE created_at_ms < $1";
pub const COLUMNS: &str = "id, user_id, category, priority, title, body, data, created_at_ms, disposition, \
     seen_at_ms, read_at_ms, archived_at_ms";

/// A page's statement: placeholders in order of first use ($1 user, then the category, the
/// cursor, the limit), as SQLite's `$n` binding needs.
pub fn page_sql(status: InboxStatus, category: bool, cursor: bool) -> String {
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    let mut sql = format!(
        "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 AND {}",
        status.condition()
    );
    if category {
        sql += &format!(" AND category = ${}", next());
    }
    if cursor {
        let (a, b) = (next(), next());
        sql += &format!(" AND (created_at_ms, id) < (${a}, ${b})");
    }
    sql + &format!(" ORDER BY created_at_ms DESC, id DESC LIMIT ${}", next())
}

/// A mark's statement: by ids ($3), or for everything created before $3.
pub fn mark_sql(mark: Mark, by_id: bool) -> String {
    let which = if by_id { "id = $3" } else { "created_at_ms < $3" };
    format!("UPDATE notifications {} AND {which}", mark.update())
}

/// A row of [`COLUMNS`].
pub fn row<R: sqlx::Row>(r: &R) -> Result<InboxRecord, StoreError>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let data: String = r.try_get(6)?;
    Ok(InboxRecord {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        category: r.try_get(2)?,
        priority: r.try_get(3)?,
        title: r.try_get(4)?,
        body: r.try_get(5)?,
        data: crate::sql::json(&data)?,
        created_at_ms: r.try_get(7)?,
        disposition: r.try_get(8)?,
        seen_at_ms: r.try_get(9)?,
        read_at_ms: r.try_get(10)?,
        archived_at_ms: r.try_get(11)?,
    })
}

/// Implements [`Inbox`] for a struct with a `pool: sqlx::Pool<$db>` field and `prepare()`.
macro_rules! impl_inbox {
    // A notification added in a transaction of its own.
    (@add $self:ident, $n:ident, $begin:literal) => {{
        let mut tx = $self.pool.begin_with($begin).await?;
        let counts = $crate::inbox::impl_inbox!(@statements tx, $n);
        tx.commit().await?;
        Ok(counts)
    }};
    // Handed to the store's batch writer (one commit for what arrives together).
    (@add $self:ident, $n:ident, $begin:literal, batched) => {{
        $self.add_batched($n.clone()).await
    }};
    // The statements of one addition, in an open transaction `$tx`.
    (@statements $tx:ident, $n:ident) => {{
        let (tx, n) = (&mut $tx, $n);
        sqlx::query($crate::inbox::RECOUNT).bind(&n.user_id).execute(&mut **tx).await?;
                let added = sqlx::query($crate::inbox::INSERT)
                    .bind(&n.id)
                    .bind(&n.user_id)
                    .bind(&n.category)
                    .bind(&n.priority)
                    .bind(&n.title)
                    .bind(&n.body)
                    .bind(n.data.to_string())
                    .bind(n.created_at_ms)
                    .bind(&n.disposition)
                    .bind(n.seen_at_ms)
                    .bind(n.read_at_ms)
                    .bind(n.archived_at_ms)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                // An archived one counts in neither (a suppressed notification: no change).
                let fresh =
                    n.archived_at_ms.is_none() && n.read_at_ms.is_none() && n.seen_at_ms.is_none();
                if added == 1 && fresh {
                    sqlx::query($crate::inbox::COUNT_ONE)
                        .bind(&n.user_id)
                        .execute(&mut **tx)
                        .await?;
                } else if added == 1 && n.archived_at_ms.is_none() {
                    sqlx::query($crate::inbox::FORGET_COUNTS)
                        .bind(&n.user_id)
                        .execute(&mut **tx)
                        .await?;
                }
        // The counts with it (made from the inbox when the row was dropped).
        sqlx::query($crate::inbox::RECOUNT).bind(&n.user_id).execute(&mut **tx).await?;
        let (unread, unseen): (i64, i64) =
            sqlx::query_as($crate::inbox::COUNTS).bind(&n.user_id).fetch_one(&mut **tx).await?;
        (unread.max(0) as u64, unseen.max(0) as u64)
    }};
    ($store:ty, $row:ty, $begin:literal $(, $batched:ident)?) => {
        #[async_trait::async_trait]
        impl $crate::inbox::Inbox for $store {
            async fn inbox_add(
                &self,
                n: &$crate::inbox::InboxRecord,
            ) -> Result<(u64, u64), $crate::StoreError> {
                self.prepare().await?;
                $crate::inbox::impl_inbox!(@add self, n, $begin $(, $batched)?)
            }

            async fn inbox_remove(
                &self,
                user_id: &str,
                id: &str,
            ) -> Result<(), $crate::StoreError> {
                self.prepare().await?;
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query($crate::inbox::REMOVE).bind(user_id).bind(id).execute(&mut *tx).await?;
                sqlx::query($crate::inbox::FORGET_COUNTS).bind(user_id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn inbox_page(
                &self,
                user_id: &str,
                status: $crate::inbox::InboxStatus,
                category: Option<&str>,
                limit: u32,
                before: Option<(i64, String)>,
            ) -> Result<Vec<$crate::inbox::InboxRecord>, $crate::StoreError> {
                self.prepare().await?;
                // Built from constants only (the status and which filters apply), never input.
                let sql = $crate::inbox::page_sql(status, category.is_some(), before.is_some());
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(user_id);
                if let Some(c) = category {
                    q = q.bind(c);
                }
                if let Some((at, id)) = before {
                    q = q.bind(at).bind(id);
                }
                let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
                rows.iter().map(|r: &$row| $crate::inbox::row(r)).collect()
            }

            async fn inbox_counts(&self, user_id: &str) -> Result<(u64, u64), $crate::StoreError> {
                self.prepare().await?;
                for _ in 0..2 {
                    let row: Option<(i64, i64)> = sqlx::query_as($crate::inbox::COUNTS)
                        .bind(user_id)
                        .fetch_optional(&self.pool)
                        .await?;
                    if let Some((unread, unseen)) = row {
                        return Ok((unread.max(0) as u64, unseen.max(0) as u64));
                    }
                    // A write transaction from the start: SQLite cannot turn a read into a write
                    // once another connection wrote (it fails at once, without waiting).
                    let mut tx = self.pool.begin_with($begin).await?;
                    sqlx::query($crate::inbox::RECOUNT).bind(user_id).execute(&mut *tx).await?;
                    tx.commit().await?;
                }
                Err($crate::StoreError::Corrupt("the inbox counts of a user cannot be made".into()))
            }

            async fn inbox_mark(
                &self,
                user_id: &str,
                which: $crate::inbox::Marked<'_>,
                mark: $crate::inbox::Mark,
                at_ms: i64,
            ) -> Result<u64, $crate::StoreError> {
                self.prepare().await?;
                let mut tx = self.pool.begin_with($begin).await?;
                let by_id = matches!(which, $crate::inbox::Marked::Ids(_));
                // Built from constants only (which mark, by id or by time), never input.
                let sql = $crate::inbox::mark_sql(mark, by_id);
                let mut n = 0;
                match which {
                    $crate::inbox::Marked::CreatedBefore(before) => {
                        let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                        let r = q.bind(user_id).bind(at_ms).bind(before).execute(&mut *tx).await?;
                        n += r.rows_affected();
                    }
                    $crate::inbox::Marked::Ids(ids) => {
                        for id in ids {
                            let q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                            let r = q.bind(user_id).bind(at_ms).bind(id).execute(&mut *tx).await?;
                            n += r.rows_affected();
                        }
                    }
                }
                // Recounted when next read: marks are few beside notifications.
                if n > 0 {
                    sqlx::query($crate::inbox::FORGET_COUNTS)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(n)
            }

            async fn inbox_purge(&self, cutoff_ms: i64) -> Result<u64, $crate::StoreError> {
                self.prepare().await?;
                let mut tx = self.pool.begin_with($begin).await?;
                let forget = sqlx::query($crate::inbox::FORGET_PURGED_COUNTS);
                forget.bind(cutoff_ms).execute(&mut *tx).await?;
                let r = sqlx::query($crate::inbox::PURGE).bind(cutoff_ms).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(r.rows_affected())
            }
        }
    };
}
pub(crate) use impl_inbox;
