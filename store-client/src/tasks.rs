//! Tasks that reached a terminal state (PROTOCOL.md v1.1, §Tasks), stored once through the
//! outbox as turns are, so the task hub lists them after the log and the node are gone. The
//! SQL is shared by both backends; [`impl_tasks!`] instantiates it per database.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use wire::task::Task;

use crate::{PutOutcome, StoreError};

/// A task once terminal, as the gateway assembled it: the task object with its artifacts, and
/// its position in the hub's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalTask {
    pub task: Task,
    /// The time of its last status change (Unix ms).
    pub updated_at_ms: i64,
    /// The seq of its last `task.status`, which breaks ties of `updated_at_ms`.
    pub seq: u64,
}

impl FinalTask {
    /// Where the hub's order puts it.
    pub fn cursor(&self) -> TaskCursor {
        TaskCursor {
            updated_at_ms: self.updated_at_ms,
            seq: self.seq,
            task_id: self.task.task_id.clone(),
        }
    }
}

/// A position in a user's task hub: newest status change first, then the higher seq, then the
/// greater id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TaskCursor {
    pub updated_at_ms: i64,
    pub seq: u64,
    pub task_id: String,
}

impl TaskCursor {
    /// The opaque form clients send back.
    pub fn encode(&self) -> String {
        crate::cursor::hex(&format!("{}:{}:{}", self.updated_at_ms, self.seq, self.task_id))
    }

    pub fn decode(s: &str) -> Result<TaskCursor, StoreError> {
        let bad = || StoreError::Invalid("the cursor is not one this server gave".into());
        let text = crate::cursor::unhex(s).ok_or_else(bad)?;
        let mut it = text.splitn(3, ':');
        let (Some(ms), Some(seq), Some(id)) = (it.next(), it.next(), it.next()) else {
            return Err(bad());
        };
        Ok(TaskCursor {
            updated_at_ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
            task_id: id.to_owned(),
        })
    }
}

/// Where terminal tasks are kept.
#[async_trait]
pub trait Tasks: Send + Sync {
    /// Stores a task and its artifacts in one transaction, unless stored already: then nothing
    /// changes (the same content: [`PutOutcome::AlreadyStored`]; other: a conflict).
    async fn put_task(&self, task: &FinalTask) -> Result<PutOutcome, StoreError>;

    /// A stored task with its artifacts.
    async fn task(&self, task_id: &str) -> Result<Option<FinalTask>, StoreError>;

    /// Up to `limit` of a user's stored tasks (without artifacts) in the hub's order, strictly
    /// after `after`, of one context when given.
    async fn task_page(
        &self,
        user_id: &str,
        context_id: Option<&str>,
        limit: u32,
        after: Option<&TaskCursor>,
    ) -> Result<Vec<FinalTask>, StoreError>;
}

pub const INSERT: &str = "INSERT INTO tasks (task_id, user_id, context_id, state, updated_at_ms, seq, doc, \
     content_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (task_id) DO NOTHING";
pub const HASH_OF: &str = "SELECT content_hash FROM tasks WHERE task_id = $1";
pub const INSERT_ARTIFACT: &str =
    "INSERT INTO task_artifacts (task_id, position, doc) VALUES ($1, $2, $3)";
pub const GET: &str = "SELECT doc, updated_at_ms, seq FROM tasks WHERE task_id = $1";
pub const ARTIFACTS: &str = "SELECT doc FROM task_artifacts WHERE task_id = $1 ORDER BY position";
macro_rules! page_sql {
    ($filter:literal, $limit:literal) => {
        concat!(
            "SELECT doc, updated_at_ms, seq FROM tasks WHERE user_id = $1 ",
            $filter,
            " ORDER BY updated_at_ms DESC, seq DESC, task_id DESC LIMIT ",
            $limit
        )
    };
}
pub const PAGE_FIRST: &str = page_sql!("", "$2");
pub const PAGE_FIRST_CTX: &str = page_sql!("AND context_id = $2", "$3");
pub const PAGE_AFTER: &str = page_sql!("AND (updated_at_ms, seq, task_id) < ($2, $3, $4)", "$5");
pub const PAGE_AFTER_CTX: &str =
    page_sql!("AND context_id = $2 AND (updated_at_ms, seq, task_id) < ($3, $4, $5)", "$6");

/// A stored task's JSON document back as the object.
pub fn from_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("stored task: {e}")))
}

/// Implements [`Tasks`] for a struct with a `pool: sqlx::Pool<$db>` field and `prepare()`.
macro_rules! impl_tasks {
    ($store:ty, $row:ty, $begin:literal) => {
        #[async_trait::async_trait]
        impl $crate::tasks::Tasks for $store {
            async fn put_task(
                &self,
                t: &$crate::tasks::FinalTask,
            ) -> Result<$crate::PutOutcome, $crate::StoreError> {
                use sqlx::Row;
                self.prepare().await?;
                let hash = $crate::types::content_hash(t);
                let mut doc = t.task.clone();
                let artifacts = doc.artifacts.take().unwrap_or_default();
                let mut tx = self.pool.begin_with($begin).await?;
                let added = sqlx::query($crate::tasks::INSERT)
                    .bind(&doc.task_id)
                    .bind(&doc.user_id)
                    .bind(&doc.context_id)
                    .bind(doc.state.as_str())
                    .bind(t.updated_at_ms)
                    .bind(t.seq as i64)
                    .bind(serde_json::to_string(&doc).unwrap_or_default())
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if added == 0 {
                    let row: Option<$row> = sqlx::query($crate::tasks::HASH_OF)
                        .bind(&doc.task_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.rollback().await?;
                    let same = row.map(|r| r.try_get::<String, _>(0)).transpose()?;
                    return match same {
                        Some(h) if h == hash => Ok($crate::PutOutcome::AlreadyStored),
                        _ => Err($crate::StoreError::Conflict(doc.task_id.clone())),
                    };
                }
                for (i, a) in artifacts.iter().enumerate() {
                    sqlx::query($crate::tasks::INSERT_ARTIFACT)
                        .bind(&doc.task_id)
                        .bind(i as i32)
                        .bind(serde_json::to_string(a).unwrap_or_default())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok($crate::PutOutcome::Inserted)
            }

            async fn task(
                &self,
                task_id: &str,
            ) -> Result<Option<$crate::tasks::FinalTask>, $crate::StoreError> {
                use sqlx::Row;
                self.prepare().await?;
                let row: Option<$row> = sqlx::query($crate::tasks::GET)
                    .bind(task_id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let mut t = $crate::tasks::impl_tasks!(@row row);
                let rows: Vec<$row> = sqlx::query($crate::tasks::ARTIFACTS)
                    .bind(task_id)
                    .fetch_all(&self.pool)
                    .await?;
                let mut artifacts = Vec::with_capacity(rows.len());
                for r in &rows {
                    artifacts.push($crate::tasks::from_doc(&r.try_get::<String, _>(0)?)?);
                }
                t.task.artifacts = Some(artifacts);
                Ok(Some(t))
            }

            async fn task_page(
                &self,
                user_id: &str,
                context_id: Option<&str>,
                limit: u32,
                after: Option<&$crate::tasks::TaskCursor>,
            ) -> Result<Vec<$crate::tasks::FinalTask>, $crate::StoreError> {
                self.prepare().await?;
                use $crate::tasks::{PAGE_AFTER, PAGE_AFTER_CTX, PAGE_FIRST, PAGE_FIRST_CTX};
                let sql = match (context_id.is_some(), after.is_some()) {
                    (false, false) => PAGE_FIRST,
                    (true, false) => PAGE_FIRST_CTX,
                    (false, true) => PAGE_AFTER,
                    (true, true) => PAGE_AFTER_CTX,
                };
                let mut q = sqlx::query(sql).bind(user_id);
                if let Some(c) = context_id {
                    q = q.bind(c);
                }
                if let Some(c) = after {
                    q = q.bind(c.updated_at_ms).bind(c.seq as i64).bind(&c.task_id);
                }
                let rows: Vec<$row> = q.bind(limit as i64).fetch_all(&self.pool).await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push($crate::tasks::impl_tasks!(@row row));
                }
                Ok(out)
            }
        }
    };
    (@row $row:ident) => {{
        use sqlx::Row;
        $crate::tasks::FinalTask {
            task: $crate::tasks::from_doc(&$row.try_get::<String, _>(0)?)?,
            updated_at_ms: $row.try_get(1)?,
            seq: $row.try_get::<i64, _>(2)? as u64,
        }
    }};
}
pub(crate) use impl_tasks;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let c = TaskCursor { updated_at_ms: 1_700_000_000_000, seq: 42, task_id: "k:1".into() };
        assert_eq!(TaskCursor::decode(&c.encode()).unwrap(), c);
        assert!(TaskCursor::decode("zz").is_err());
        assert!(TaskCursor::decode(&crate::cursor::hex("1:x:y")).is_err());
        let older = TaskCursor { updated_at_ms: 1, seq: 99, task_id: "z".into() };
        assert!(older < c, "the hub's order compares the time first");
    }
}
