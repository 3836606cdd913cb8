//! The embedded outbox: a SQLite file (`<data_dir>/outbox.db`, WAL). A turn is in it, durably
//! (the write is synced), before its `turn.end` is published, so neither a store outage nor a
//! restart loses it.
//!
//! One process owns the file and one persister drains it, so a claim needs no lease: it is a
//! read. Removing a stored entry is not synced on its own (it reaches the disk with the next
//! synced write): if it is lost in a crash, the turn is stored again, which the store's
//! idempotent write makes a no-op. That keeps a turn to two synced writes: in here, and in the
//! store. With the embedded store on the same disk the gateway skips this file for finished
//! turns and tasks (one synced write: the store's) and only forgets their open notes here.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteSynchronous};

use super::{AsideFilter, Outbox, OutboxStats, Pending, SetAside, now_ms};
use crate::{Final, FinalTurn, StoreError, TurnRecord};
use wire::task::Task;

pub struct EmbeddedOutbox {
    /// Writes that must be on disk when they return (synchronous = FULL).
    pool: SqlitePool,
    /// Reads, and removals that may ride on the next synced write (synchronous = NORMAL).
    relaxed: SqlitePool,
}

const ENQUEUE: &str = "INSERT INTO outbox (turn_id, conversation_id, payload, enqueued_ms, due_ms) \
     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (turn_id) DO NOTHING";
const CLAIM: &str = "SELECT turn_id, payload, attempts, enqueued_ms FROM outbox \
     WHERE set_aside = FALSE AND due_ms <= $1 ORDER BY due_ms LIMIT $2";
const COMPLETE: &str = "DELETE FROM outbox WHERE turn_id = $1";
const RESCHEDULE: &str =
    "UPDATE outbox SET due_ms = $1, attempts = $2, last_error = $3 WHERE turn_id = $4";
const SET_ASIDE: &str = "UPDATE outbox SET set_aside = TRUE, last_error = $1 WHERE turn_id = $2";
const RELEASE: &str = "UPDATE outbox SET due_ms = $1 WHERE set_aside = FALSE AND due_ms > $1";
const STATS: &str = "SELECT COUNT(*), MIN(enqueued_ms) FROM outbox WHERE set_aside = FALSE";
const ASIDE: &str = "SELECT COUNT(*) FROM outbox WHERE set_aside = TRUE";
const OPEN_TURN: &str = "INSERT INTO open_turns (turn_id, user_id, conversation_id, created_at_ms, meta) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (turn_id) DO NOTHING";
const CHECKPOINT: &str =
    "UPDATE open_turns SET text = $1, truncated = $2, next_index = $3 WHERE turn_id = $4";
const CLOSE_TURN: &str = "DELETE FROM open_turns WHERE turn_id = $1";
const OPEN_TASK: &str = "INSERT INTO open_tasks (task_id, user_id, doc) VALUES ($1, $2, $3) \
     ON CONFLICT (task_id) DO NOTHING";
const CLOSE_TASK: &str = "DELETE FROM open_tasks WHERE task_id = $1";
const OPEN_TASKS: &str = "SELECT doc FROM open_tasks";
const OPEN_TURNS: &str = "SELECT turn_id, user_id, conversation_id, created_at_ms, meta, text, truncated, \
     next_index FROM open_turns";
const ASIDE_LIST: &str = "SELECT turn_id, payload, COALESCE(last_error, '') FROM outbox \
     WHERE set_aside = TRUE ORDER BY enqueued_ms LIMIT $1";
const UNSET_ASIDE: &str = "UPDATE outbox SET set_aside = FALSE, due_ms = $1, attempts = 0 \
     WHERE turn_id = $2 AND set_aside = TRUE";

impl EmbeddedOutbox {
    /// Opens (creating if needed) the outbox in `dir`, and migrates it.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        let options = crate::embedded::file_options(dir, "outbox.db")?;
        let relaxed_options = options.clone().synchronous(SqliteSynchronous::Normal);
        let pool = crate::embedded::pool(2).connect_with(options).await?;
        sqlx::migrate!("./outbox-migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Corrupt(format!("outbox migration: {e}")))?;
        // One process owns this file: leases and backoff of a previous life (a crash mid-attempt)
        // mean nothing now, so everything waiting is due at once.
        sqlx::query(RELEASE).bind(now_ms()).execute(&pool).await?;
        let relaxed = crate::embedded::pool(2).connect_with(relaxed_options).await?;
        Ok(EmbeddedOutbox { pool, relaxed })
    }

    /// Records a finalised turn, durably, unless its `turn_id` is waiting already (a repeated
    /// end is not a second entry), and forgets it as an open turn in the same step. Returns
    /// whether it was added.
    pub async fn enqueue(&self, turn: &FinalTurn) -> Result<bool, StoreError> {
        self.enqueue_entry(&Final::Turn(turn.clone())).await
    }

    /// One synced transaction: the entry (a finished turn, a terminal task, or a notification
    /// the inbox could not take when it was sent) added under its [`key`](Final::key), and a
    /// turn's or task's open note removed (a notification has none).
    pub async fn enqueue_entry(&self, entry: &Final) -> Result<bool, StoreError> {
        let (id, group, close) = match entry {
            Final::Turn(t) => (&t.turn.turn_id, &t.turn.conversation_id, Some(CLOSE_TURN)),
            Final::Task(t) => (&t.task.task_id, &t.task.context_id, Some(CLOSE_TASK)),
            Final::Note(n) => (&n.note.id, &n.note.user_id, None),
        };
        let payload =
            serde_json::to_string(entry).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let added = sqlx::query(ENQUEUE)
            .bind(entry.key())
            .bind(group)
            .bind(payload)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if let Some(close) = close {
            sqlx::query(close).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(added == 1)
    }

    /// Notes a task that is not terminal yet (unsynced, as [`open_turn`](Self::open_turn)).
    pub async fn open_task(&self, task: &Task) -> Result<(), StoreError> {
        let doc = serde_json::to_string(task).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(OPEN_TASK)
            .bind(&task.task_id)
            .bind(&task.user_id)
            .bind(doc)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    /// Tasks a previous life of the process left open, as they were created.
    pub async fn interrupted_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let rows = sqlx::query(OPEN_TASKS).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(crate::tasks::from_doc(&row.try_get::<String, _>(0)?)?);
        }
        Ok(out)
    }

    /// Notes a turn that started streaming (its text and status in `turn` are not read). Not
    /// synced on its own: a process crash keeps it (WAL), a power loss may not.
    pub async fn open_turn(&self, turn: &TurnRecord) -> Result<(), StoreError> {
        sqlx::query(OPEN_TURN)
            .bind(&turn.turn_id)
            .bind(&turn.user_id)
            .bind(&turn.conversation_id)
            .bind(turn.created_at_ms)
            .bind(turn.meta.to_string())
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    /// Forgets an open turn (`task: false`) or task stored without passing through here (see
    /// [`Persister::store_now`](crate::Persister::store_now)). Not synced: if a crash loses it,
    /// the next start finds it in the store and forgets it then.
    pub async fn forget_open(&self, id: &str, task: bool) -> Result<(), StoreError> {
        let close = if task { CLOSE_TASK } else { CLOSE_TURN };
        sqlx::query(close).bind(id).execute(&self.relaxed).await?;
        Ok(())
    }

    /// Keeps an open turn's text so far (and the index of its next delta), for the record of
    /// it after a crash.
    pub async fn checkpoint(
        &self,
        turn_id: &str,
        text: &str,
        truncated: bool,
        next_index: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(CHECKPOINT)
            .bind(text)
            .bind(truncated)
            .bind(next_index as i64)
            .bind(turn_id)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    /// Turns a previous life of the process left open (it crashed while they streamed), as
    /// `failed` records with their last checkpointed text, each with the index of its next
    /// delta.
    pub async fn interrupted(&self) -> Result<Vec<(TurnRecord, u64)>, StoreError> {
        let rows = sqlx::query(OPEN_TURNS).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let meta: String = row.try_get(4)?;
            let next_index = row.try_get::<i64, _>(7)? as u64;
            let record = TurnRecord {
                turn_id: row.try_get(0)?,
                user_id: row.try_get(1)?,
                conversation_id: row.try_get(2)?,
                status: wire::TurnStatus::Failed,
                text: row.try_get(5)?,
                truncated: row.try_get(6)?,
                created_at_ms: row.try_get(3)?,
                completed_at_ms: now_ms(),
                meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
            };
            out.push((record, next_index));
        }
        Ok(out)
    }
}

#[async_trait]
impl Outbox for EmbeddedOutbox {
    /// Due entries; no lease is taken (one persister drains this file, one batch at a time).
    async fn claim(&self, max: usize, _lease: Duration) -> Result<Vec<Pending>, StoreError> {
        let rows =
            sqlx::query(CLAIM).bind(now_ms()).bind(max as i64).fetch_all(&self.relaxed).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let turn_id: String = row.try_get(0)?;
            let payload: String = row.try_get(1)?;
            match serde_json::from_str::<Final>(&payload) {
                Ok(item) => out.push(Pending {
                    item,
                    attempts: row.try_get::<i64, _>(2)? as u32,
                    enqueued_ms: row.try_get(3)?,
                }),
                // Unreadable: never retried, kept for an operator.
                Err(e) => self.set_aside(&turn_id, &format!("unreadable entry: {e}")).await?,
            }
        }
        Ok(out)
    }

    async fn complete(&self, turn_id: &str) -> Result<(), StoreError> {
        sqlx::query(COMPLETE).bind(turn_id).execute(&self.relaxed).await?;
        Ok(())
    }

    async fn reschedule(
        &self,
        turn_id: &str,
        attempts: u32,
        delay: Duration,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(RESCHEDULE)
            .bind(now_ms() + delay.as_millis() as i64)
            .bind(attempts as i64)
            .bind(error)
            .bind(turn_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_aside(&self, turn_id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(SET_ASIDE).bind(error).bind(turn_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(STATS).fetch_one(&self.relaxed).await?;
        let aside = sqlx::query(ASIDE).fetch_one(&self.relaxed).await?;
        Ok(OutboxStats {
            depth: row.try_get::<i64, _>(0)? as u64,
            oldest_enqueued_ms: row.try_get(1)?,
            set_aside: aside.try_get::<i64, _>(0)? as u64,
        })
    }

    async fn set_aside_entries(&self, max: usize) -> Result<Vec<SetAside>, StoreError> {
        let rows = sqlx::query(ASIDE_LIST).bind(max as i64).fetch_all(&self.relaxed).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let payload: String = row.try_get(1)?;
            let user_id = serde_json::from_str::<Final>(&payload)
                .map(|t| t.user_id().to_owned())
                .unwrap_or_default();
            out.push(SetAside { turn_id: row.try_get(0)?, user_id, error: row.try_get(2)? });
        }
        Ok(out)
    }

    async fn retry_set_aside(&self, filter: &AsideFilter) -> Result<u64, StoreError> {
        let mut n = 0;
        for entry in self.set_aside_entries(usize::MAX >> 1).await? {
            if filter.takes(&entry) {
                n += sqlx::query(UNSET_ASIDE)
                    .bind(now_ms())
                    .bind(&entry.turn_id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
        }
        Ok(n)
    }
}
