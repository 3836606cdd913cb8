//! Embedded mode's sink: a finished turn is copied whole into the SQLite outbox (its state is
//! in memory and dies with the process), or stored at once when the store is on the same disk.

use std::sync::Arc;

use async_trait::async_trait;
use store_client::{EmbeddedOutbox, FinalTask, FinalTurn, KeptNote, Outbox, Persister, TurnRecord};
use wire::task::Task;

use super::{TurnSink, note_not_dropped, outbox_down};
use crate::backplane::{Keep, Unavailable};

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
