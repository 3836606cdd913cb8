//! The SQL both backends run, and the implementation of [`crate::TurnStore`] over a sqlx pool,
//! instantiated once per database by [`impl_turn_store!`]. Placeholders appear in ascending
//! order of first use, which SQLite's `$n` binding needs.

/// Inserts unless the id is taken, or the user's part of the conversation (or all of it) was
/// deleted after the turn began (the tombstone check is folded in, so the common path is one
/// statement).
pub const INSERT_TURN: &str = "INSERT INTO turns (turn_id, conversation_id, user_id, status, text, truncated, \
     created_at_ms, completed_at_ms, meta, content_hash, text_json) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 \
     WHERE NOT EXISTS (SELECT 1 FROM conversation_deletions WHERE conversation_id = $2 \
     AND user_id IN ($3, '') AND deleted_at_ms >= $7) \
     ON CONFLICT (turn_id) DO NOTHING";
pub const INSERT_TRACE: &str =
    "INSERT INTO turn_traces (turn_id, position, kind, data) VALUES ($1, $2, $3, $4)";
pub const HASH_OF: &str = "SELECT content_hash FROM turns WHERE turn_id = $1";
/// History pages: one statement per case, not one with an optional filter (`$2 = '' OR
/// user_id = $2` made every page of a prepared statement ten times slower on PostgreSQL).
/// Parameters: conversation, then the owner (when filtered), the cursor (after the first
/// page), the row count. Index-backed keyset paging, no OFFSET.
macro_rules! page_sql {
    ($filter:literal) => {
        concat!(
            "SELECT turn_id, conversation_id, user_id, status, text, truncated, created_at_ms, \
             completed_at_ms, meta, text_json FROM turns WHERE conversation_id = $1 ",
            $filter,
            " ORDER BY created_at_ms DESC, turn_id DESC LIMIT "
        )
    };
}
pub const PAGE_FIRST_ANY: &str = concat!(page_sql!(""), "$2");
pub const PAGE_FIRST_OWN: &str = concat!(page_sql!("AND user_id = $2"), "$3");
pub const PAGE_AFTER_ANY: &str =
    concat!(page_sql!("AND (created_at_ms, turn_id) < ($2, $3)"), "$4");
pub const PAGE_AFTER_OWN: &str =
    concat!(page_sql!("AND user_id = $2 AND (created_at_ms, turn_id) < ($3, $4)"), "$5");
pub const TRACES: &str = "SELECT kind, data FROM turn_traces WHERE turn_id = $1 ORDER BY position";
pub const USER_OF_TURN: &str = "SELECT user_id FROM turns WHERE turn_id = $1";
/// Deletions take the conversation and the user whose turns go (`''`: everyone's).
pub const DELETE_CONVERSATION_TRACES: &str = "DELETE FROM turn_traces WHERE turn_id IN \
     (SELECT turn_id FROM turns WHERE conversation_id = $1 AND ($2 = '' OR user_id = $2))";
pub const DELETE_CONVERSATION: &str =
    "DELETE FROM turns WHERE conversation_id = $1 AND ($2 = '' OR user_id = $2)";
pub const TOMBSTONE: &str = "INSERT INTO conversation_deletions (conversation_id, user_id, deleted_at_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (conversation_id, user_id) DO UPDATE SET deleted_at_ms = excluded.deleted_at_ms";
pub const PURGE_TOMBSTONES: &str = "DELETE FROM conversation_deletions WHERE deleted_at_ms < $1";
pub const PURGE_TRACES: &str = "DELETE FROM turn_traces WHERE turn_id IN (SELECT turn_id FROM turns WHERE completed_at_ms < $1)";
pub const PURGE: &str = "DELETE FROM turns WHERE completed_at_ms < $1";
pub const PURGE_TASK_ARTIFACTS: &str = "DELETE FROM task_artifacts WHERE task_id IN (SELECT task_id FROM tasks WHERE updated_at_ms < $1)";
pub const PURGE_TASKS: &str = "DELETE FROM tasks WHERE updated_at_ms < $1";
pub const PREFERENCES: &str = "SELECT doc FROM preferences WHERE user_id = $1";
pub const PUT_PREFERENCES: &str = "INSERT INTO preferences (user_id, doc, updated_at_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (user_id) DO UPDATE SET doc = excluded.doc, updated_at_ms = excluded.updated_at_ms";

/// Implements [`crate::TurnStore`] for a struct with a `pool: sqlx::Pool<$db>` field; `$begin`
/// starts a write transaction (SQLite needs `BEGIN IMMEDIATE`: two deferred transactions that
/// both read and then write would fail with SQLITE_BUSY instead of waiting for each other).
macro_rules! impl_turn_store {
    ($store:ty, $row:ty, $begin:literal) => {
        #[async_trait::async_trait]
        impl $crate::TurnStore for $store {
            async fn put(
                &self,
                turn: &$crate::FinalTurn,
            ) -> Result<$crate::PutOutcome, $crate::StoreError> {
                self.prepare().await?;
                use sqlx::Row;
                let hash = turn.content_hash();
                let (traces, turn) = (&turn.traces, &turn.turn);
                let mut tx = self.pool.begin_with($begin).await?;
                let inserted = sqlx::query($crate::sql::INSERT_TURN)
                    .bind(&turn.turn_id)
                    .bind(&turn.conversation_id)
                    .bind(&turn.user_id)
                    .bind(turn.status.as_str())
                    .bind($crate::sql::stored_text(&turn.text).as_ref())
                    .bind(turn.truncated)
                    .bind(turn.created_at_ms)
                    .bind(turn.completed_at_ms)
                    .bind(turn.meta.to_string())
                    .bind(&hash)
                    .bind(turn.text.contains('\0'))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    // Stored before (the same, or other content), or its conversation was
                    // deleted after it began.
                    let row: Option<$row> = sqlx::query($crate::sql::HASH_OF)
                        .bind(&turn.turn_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.rollback().await?;
                    let Some(row) = row else { return Ok($crate::PutOutcome::Discarded) };
                    let stored: String = row.try_get(0)?;
                    return if stored == hash {
                        Ok($crate::PutOutcome::AlreadyStored)
                    } else {
                        Err($crate::StoreError::Conflict(turn.turn_id.clone()))
                    };
                }
                for (i, t) in traces.iter().enumerate() {
                    sqlx::query($crate::sql::INSERT_TRACE)
                        .bind(&turn.turn_id)
                        .bind(i as i32)
                        .bind(&t.kind)
                        .bind(t.data.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok($crate::PutOutcome::Inserted)
            }

            async fn page(
                &self,
                conversation_id: &str,
                owner: Option<&str>,
                limit: u32,
                before: Option<&$crate::Cursor>,
            ) -> Result<$crate::Page, $crate::StoreError> {
                self.prepare().await?;
                if limit == 0 || limit > 1000 {
                    return Err($crate::StoreError::Invalid("limit must be 1..=1000".into()));
                }
                // One more than asked tells whether another page follows.
                let fetch = limit as i64 + 1;
                let sql = match (owner.is_some(), before.is_some()) {
                    (false, false) => $crate::sql::PAGE_FIRST_ANY,
                    (true, false) => $crate::sql::PAGE_FIRST_OWN,
                    (false, true) => $crate::sql::PAGE_AFTER_ANY,
                    (true, true) => $crate::sql::PAGE_AFTER_OWN,
                };
                let mut query = sqlx::query(sql).bind(conversation_id);
                if let Some(owner) = owner {
                    query = query.bind(owner);
                }
                if let Some(c) = before {
                    query = query.bind(c.created_at_ms).bind(&c.turn_id);
                }
                let rows: Vec<$row> = query.bind(fetch).fetch_all(&self.pool).await?;
                let mut turns =
                    rows.iter().map($crate::sql::record).collect::<Result<Vec<_>, _>>()?;
                let next = if turns.len() > limit as usize {
                    turns.truncate(limit as usize);
                    turns.last().map(|t| $crate::Cursor {
                        created_at_ms: t.created_at_ms,
                        turn_id: t.turn_id.clone(),
                    })
                } else {
                    None
                };
                Ok($crate::Page { turns, next })
            }

            async fn traces(
                &self,
                turn_id: &str,
            ) -> Result<Option<(String, Vec<$crate::Trace>)>, $crate::StoreError> {
                self.prepare().await?;
                use sqlx::Row;
                let Some(user) = sqlx::query($crate::sql::USER_OF_TURN)
                    .bind(turn_id)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let user: String = user.try_get(0)?;
                let rows: Vec<$row> =
                    sqlx::query($crate::sql::TRACES).bind(turn_id).fetch_all(&self.pool).await?;
                let mut traces = Vec::with_capacity(rows.len());
                for r in &rows {
                    let data: String = r.try_get(1)?;
                    traces.push($crate::Trace {
                        kind: r.try_get(0)?,
                        data: $crate::sql::json(&data)?,
                    });
                }
                Ok(Some((user, traces)))
            }

            async fn delete_conversation(
                &self,
                conversation_id: &str,
                owner: Option<&str>,
                at_ms: i64,
            ) -> Result<u64, $crate::StoreError> {
                self.prepare().await?;
                let who = owner.unwrap_or("");
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query($crate::sql::TOMBSTONE)
                    .bind(conversation_id)
                    .bind(who)
                    .bind(at_ms)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::DELETE_CONVERSATION_TRACES)
                    .bind(conversation_id)
                    .bind(who)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query($crate::sql::DELETE_CONVERSATION)
                    .bind(conversation_id)
                    .bind(who)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n)
            }

            async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, $crate::StoreError> {
                self.prepare().await?;
                let mut tx = self.pool.begin_with($begin).await?;
                sqlx::query($crate::sql::PURGE_TRACES).bind(cutoff_ms).execute(&mut *tx).await?;
                sqlx::query($crate::sql::PURGE_TOMBSTONES)
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query($crate::sql::PURGE)
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // Ended tasks go with the turns of their age (counted apart: not turns).
                sqlx::query($crate::sql::PURGE_TASK_ARTIFACTS)
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::sql::PURGE_TASKS).bind(cutoff_ms).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn ping(&self) -> Result<(), $crate::StoreError> {
                self.prepare().await?;
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn preferences(
                &self,
                user_id: &str,
            ) -> Result<Option<String>, $crate::StoreError> {
                self.prepare().await?;
                use sqlx::Row;
                let row = sqlx::query($crate::sql::PREFERENCES)
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
            }

            async fn put_preferences(
                &self,
                user_id: &str,
                doc: &str,
            ) -> Result<(), $crate::StoreError> {
                self.prepare().await?;
                sqlx::query($crate::sql::PUT_PREFERENCES)
                    .bind(user_id)
                    .bind(doc)
                    .bind($crate::outbox::now_ms())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_turn_store;

/// A history row, from either database's row type.
pub fn record<R: sqlx::Row>(r: &R) -> Result<crate::TurnRecord, crate::StoreError>
where
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let status: String = r.try_get(3)?;
    let meta: String = r.try_get(8)?;
    let text: String = r.try_get(4)?;
    let text_json: bool = r.try_get(9)?;
    Ok(crate::TurnRecord {
        turn_id: r.try_get(0)?,
        conversation_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        status: crate::types::parse_status(&status)?,
        text: if text_json { read_text_json(&text)? } else { text },
        truncated: r.try_get(5)?,
        created_at_ms: r.try_get(6)?,
        completed_at_ms: r.try_get(7)?,
        meta: json(&meta)?,
    })
}

pub fn json(s: &str) -> Result<serde_json::Value, crate::StoreError> {
    serde_json::from_str(s).map_err(|e| crate::StoreError::Corrupt(format!("stored JSON: {e}")))
}

/// The form a turn's text is stored in: itself, or (when it holds a NUL, which PostgreSQL's
/// TEXT refuses) its JSON string literal, flagged in `text_json`.
pub fn stored_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(serde_json::Value::from(text).to_string())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn read_text_json(s: &str) -> Result<String, crate::StoreError> {
    serde_json::from_str(s).map_err(|e| crate::StoreError::Corrupt(format!("stored text: {e}")))
}
