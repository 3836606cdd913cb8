//! Where a finished turn goes before its `turn.end` is published, so it reaches the store
//! whatever happens after: the embedded outbox takes a whole copy (turn state is in memory and
//! dies with the process); the Redis outbox takes only the turn's name (its state is already in
//! Redis, and any node stores it from there).

use async_trait::async_trait;
use store_client::{FinalTask, FinalTurn, KeptNote, TurnRecord};
use wire::task::Task;

use crate::backplane::{Keep, Unavailable};

mod embedded;
mod redis;

pub use embedded::EmbeddedSink;
pub use redis::RedisSink;

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

pub(super) fn note_not_dropped(id: &str, e: store_client::StoreError) {
    tracing::error!(id, error = %e, "an unpublished notification stays in the outbox");
}

pub(super) fn outbox_down(what: &str, id: &str, e: impl std::fmt::Display) -> Unavailable {
    tracing::error!(id, error = %e, "the outbox cannot take a finished {what}");
    Unavailable {
        code: "outbox_unavailable",
        message: format!("the {what} could not be recorded for storage now; try the end again"),
    }
}
