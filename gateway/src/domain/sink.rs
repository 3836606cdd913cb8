//! Where a finished turn goes before its `turn.end` is published, so it reaches the store
//! whatever happens after: the embedded outbox takes a whole copy (turn state is in memory and
//! dies with the process); the Redis outbox takes only the turn's name (its state is already in
//! Redis, and any node stores it from there).

use std::sync::Arc;

use async_trait::async_trait;
use store_client::{EmbeddedOutbox, FinalTask, FinalTurn, KeptNote, Outbox, Persister, TurnRecord};
use wire::task::Task;

use crate::backplane::redis::RedisOutbox;
use crate::backplane::{Keep, Unavailable};

#[async_trait]
pub trait TurnSink: Send + Sync {
    /// Whether [`finishing`](Self::finishing) needs the finished turn whole.
    fn wants_copy(&self) -> bool;

    /// Called before the end is appended; an error leaves the turn streaming (the caller
    /// answers 503 and the end may be sent again). May be called again for the same turn.
    async fn finishing(
        &self,
        user: &str,
        turn_id: &str,
        copy: Option<FinalTurn>,
    ) -> Result<(), Unavailable>;

    /// The end was appended: the turn can be stored now.
    fn ended(&self);

    /// How long an ended turn's state is kept.
    fn ended_keep(&self) -> Keep;

    /// A turn started (embedded: noted, so a crash ends it rather than loses it).
    async fn opened(&self, _turn: &TurnRecord) {}

    /// Whether streaming turns' text is checkpointed (see [`checkpoint`](Self::checkpoint)).
    fn checkpoints(&self) -> bool {
        false
    }

    async fn checkpoint(
        &self,
        _turn_id: &str,
        _text: &str,
        _truncated: bool,
        _next_index: u64,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Turns a previous life of this process left streaming, with their last checkpoint.
    async fn interrupted(&self) -> Result<Vec<(TurnRecord, u64)>, String> {
        Ok(Vec::new())
    }

    /// A task reaches a terminal state: as [`finishing`](Self::finishing) for a turn.
    async fn finishing_task(
        &self,
        user: &str,
        task_id: &str,
        copy: Option<FinalTask>,
    ) -> Result<(), Unavailable>;

    /// A task was created (embedded: noted, so a crash ends it rather than loses it).
    async fn opened_task(&self, _task: &Task) {}

    /// Tasks a previous life of this process left open, as created.
    async fn interrupted_tasks(&self) -> Result<Vec<Task>, String> {
        Ok(Vec::new())
    }

    /// A notification the inbox could not take (the store is down) is kept for the store before
    /// it is published (Redis: its record is in the log already, as a turn's state is).
    async fn keep_note(&self, note: &KeptNote) -> Result<(), Unavailable>;

    /// A kept notification was not published after all: it must not reach the inbox.
    async fn drop_note(&self, id: &str);
}

fn note_not_dropped(id: &str, e: store_client::StoreError) {
    tracing::error!(id, error = %e, "an unpublished notification stays in the outbox");
}

fn outbox_down(what: &str, id: &str, e: impl std::fmt::Display) -> Unavailable {
    tracing::error!(id, error = %e, "the outbox cannot take a finished {what}");
    Unavailable {
        code: "outbox_unavailable",
        message: format!("the {what} could not be recorded for storage now; try the end again"),
    }
}

/// Embedded mode: the SQLite outbox in `GATEWAY_DATA_DIR`.
pub struct EmbeddedSink {
    pub outbox: Arc<EmbeddedOutbox>,
    pub persister: Arc<Persister>,
    /// How long an ended turn (and so its idempotency) is remembered.
    pub turn_retention: std::time::Duration,
}

#[async_trait]
impl TurnSink for EmbeddedSink {
    fn wants_copy(&self) -> bool {
        true
    }

    async fn finishing(
        &self,
        _user: &str,
        turn_id: &str,
        copy: Option<FinalTurn>,
    ) -> Result<(), Unavailable> {
        let Some(copy) = copy else { return Ok(()) };
        self.outbox.enqueue(&copy).await.map_err(|e| outbox_down("turn", turn_id, e))?;
        Ok(())
    }

    async fn finishing_task(
        &self,
        _user: &str,
        task_id: &str,
        copy: Option<FinalTask>,
    ) -> Result<(), Unavailable> {
        let Some(copy) = copy else { return Ok(()) };
        self.outbox.enqueue_task(&copy).await.map_err(|e| outbox_down("task", task_id, e))?;
        Ok(())
    }

    async fn opened_task(&self, task: &Task) {
        if let Err(e) = self.outbox.open_task(task).await {
            tracing::warn!(task_id = %task.task_id, error = %e, "cannot note an open task");
        }
    }

    async fn interrupted_tasks(&self) -> Result<Vec<Task>, String> {
        self.outbox.interrupted_tasks().await.map_err(|e| e.to_string())
    }

    async fn keep_note(&self, note: &KeptNote) -> Result<(), Unavailable> {
        self.outbox
            .enqueue_note(note)
            .await
            .map_err(|e| outbox_down("notification", &note.note.id, e))?;
        Ok(())
    }

    async fn drop_note(&self, id: &str) {
        let key = store_client::note_key(id);
        if let Err(e) = self.outbox.complete(&key).await {
            note_not_dropped(id, e);
        }
    }

    fn ended(&self) {
        self.persister.wake();
    }

    fn ended_keep(&self) -> Keep {
        Keep::For(self.turn_retention)
    }

    async fn opened(&self, turn: &TurnRecord) {
        // Unsynced: a crash of the process keeps it, and it costs no fsync.
        if let Err(e) = self.outbox.open_turn(turn).await {
            tracing::warn!(turn_id = %turn.turn_id, error = %e, "cannot note an open turn");
        }
    }

    fn checkpoints(&self) -> bool {
        true
    }

    async fn checkpoint(
        &self,
        turn_id: &str,
        text: &str,
        truncated: bool,
        next_index: u64,
    ) -> Result<(), String> {
        self.outbox
            .checkpoint(turn_id, text, truncated, next_index)
            .await
            .map_err(|e| e.to_string())
    }

    async fn interrupted(&self) -> Result<Vec<(TurnRecord, u64)>, String> {
        self.outbox.interrupted().await.map_err(|e| e.to_string())
    }
}

fn redis_down(e: redis::RedisError) -> Unavailable {
    tracing::warn!(error = %e, "Redis call failed");
    Unavailable { code: "redis_unavailable", message: "Redis cannot be reached now".into() }
}

/// Redis mode: the outbox holds the turn's name; its state stays in Redis until stored.
pub struct RedisSink {
    pub outbox: Arc<RedisOutbox>,
    pub persister: Arc<Persister>,
}

#[async_trait]
impl TurnSink for RedisSink {
    fn wants_copy(&self) -> bool {
        false
    }

    async fn finishing(
        &self,
        user: &str,
        turn_id: &str,
        _copy: Option<FinalTurn>,
    ) -> Result<(), Unavailable> {
        self.outbox.add(turn_id, user).await.map_err(redis_down)
    }

    async fn finishing_task(
        &self,
        user: &str,
        task_id: &str,
        _copy: Option<FinalTask>,
    ) -> Result<(), Unavailable> {
        self.outbox.add(&store_client::task_key(task_id), user).await.map_err(redis_down)
    }

    async fn keep_note(&self, note: &KeptNote) -> Result<(), Unavailable> {
        let key = store_client::note_key(&note.note.id);
        self.outbox.add(&key, &note.note.user_id).await.map_err(redis_down)
    }

    async fn drop_note(&self, id: &str) {
        if let Err(e) = self.outbox.complete(&store_client::note_key(id)).await {
            note_not_dropped(id, e);
        }
    }

    fn ended(&self) {
        self.persister.wake();
    }

    /// Kept until stored: the outbox reads it from here.
    fn ended_keep(&self) -> Keep {
        Keep::Forever
    }
}
