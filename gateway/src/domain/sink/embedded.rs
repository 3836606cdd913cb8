//! Embedded mode's sink: a finished turn is copied whole into the SQLite outbox (its state is
//! in memory and dies with the process) and stored from there. When the store is the embedded
//! one, on the outbox's disk, the turn is stored at once instead: the outbox would only add a
//! second synced write, a read and a removal per turn (the store being down means the disk
//! is, and the outbox with it). If that write fails, the outbox takes the turn as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use store_client::{
    EmbeddedOutbox, Final, FinalTask, FinalTurn, KeptNote, Outbox, Persister, TurnRecord,
};
use wire::task::Task;

use super::{TurnSink, note_not_dropped, outbox_down};
use crate::backplane::{Keep, Unavailable};

/// Embedded mode: the SQLite outbox in `GATEWAY_DATA_DIR`.
pub struct EmbeddedSink {
    pub outbox: Arc<EmbeddedOutbox>,
    pub persister: Arc<Persister>,
    /// How long an ended turn (and so its idempotency) is remembered.
    pub turn_retention: std::time::Duration,
    /// The store is the embedded one: finished turns and tasks are stored at once.
    pub direct: bool,
    /// Something went into the outbox since the persister was last woken.
    pub queued: AtomicBool,
}

impl EmbeddedSink {
    /// A finished turn or task (or a notification the inbox could not take) on its way to
    /// the store: stored at once where the store is local, else recorded in the outbox.
    async fn finish(&self, item: Final) -> Result<(), Unavailable> {
        if self.stored_now(&item).await {
            return Ok(());
        }
        if let Err(e) = self.outbox.enqueue_entry(&item).await {
            let what = match &item {
                Final::Turn(_) => "turn",
                Final::Task(_) => "task",
                Final::Note(_) => "notification",
            };
            return Err(outbox_down(what, &item.key(), e));
        }
        self.queued.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Stores a finished turn or task now if the store is local; whether it was.
    async fn stored_now(&self, item: &Final) -> bool {
        if !self.direct {
            return false;
        }
        let (id, task) = match item {
            Final::Turn(t) => (t.turn.turn_id.as_str(), false),
            Final::Task(t) => (t.task.task_id.as_str(), true),
            Final::Note(_) => return false,
        };
        if let Err(e) = self.persister.store_now(item).await {
            tracing::warn!(id, error = %e, "storing at once failed; the outbox takes it");
            return false;
        }
        if let Err(e) = self.outbox.forget_open(id, task).await {
            tracing::warn!(id, error = %e, "cannot forget a stored open entry; the next start will");
        }
        true
    }

    /// Whether a previous life stored this open turn or task after all (it crashed before
    /// forgetting it): then it is forgotten now, not ended again.
    async fn stored_before(&self, id: &str, task: bool) -> Result<bool, String> {
        let store = self.persister.store();
        let found = if task {
            store.task(id).await.map(|t| t.is_some())
        } else {
            store.traces(id).await.map(|t| t.is_some())
        };
        if !found.map_err(|e| e.to_string())? {
            return Ok(false);
        }
        self.outbox.forget_open(id, task).await.map_err(|e| e.to_string())?;
        Ok(true)
    }
}

#[async_trait]
impl TurnSink for EmbeddedSink {
    fn wants_copy(&self) -> bool {
        true
    }

    async fn finishing(
        &self,
        _user: &str,
        _turn_id: &str,
        copy: Option<FinalTurn>,
    ) -> Result<(), Unavailable> {
        let Some(copy) = copy else { return Ok(()) };
        self.finish(Final::Turn(copy)).await
    }

    async fn finishing_task(
        &self,
        _user: &str,
        _task_id: &str,
        copy: Option<FinalTask>,
    ) -> Result<(), Unavailable> {
        let Some(copy) = copy else { return Ok(()) };
        self.finish(Final::Task(copy)).await
    }

    async fn opened_task(&self, task: &Task) {
        if let Err(e) = self.outbox.open_task(task).await {
            tracing::warn!(task_id = %task.task_id, error = %e, "cannot note an open task");
        }
    }

    async fn interrupted_tasks(&self) -> Result<Vec<Task>, String> {
        let mut open = Vec::new();
        for task in self.outbox.interrupted_tasks().await.map_err(|e| e.to_string())? {
            if !self.stored_before(&task.task_id, true).await? {
                open.push(task);
            }
        }
        Ok(open)
    }

    async fn keep_note(&self, note: &KeptNote) -> Result<(), Unavailable> {
        self.finish(Final::Note(note.clone())).await
    }

    async fn drop_note(&self, id: &str) {
        let key = store_client::note_key(id);
        if let Err(e) = self.outbox.complete(&key).await {
            note_not_dropped(id, e);
        }
    }

    fn ended(&self) {
        if self.queued.swap(false, Ordering::Relaxed) {
            self.persister.wake();
        }
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
        let mut open = Vec::new();
        for (turn, next_index) in self.outbox.interrupted().await.map_err(|e| e.to_string())? {
            if !self.stored_before(&turn.turn_id, false).await? {
                open.push((turn, next_index));
            }
        }
        Ok(open)
    }
}
