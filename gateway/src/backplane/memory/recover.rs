//! Turns that outlive a crash. Embedded mode keeps turn state in memory, so a `kill -9` mid-turn
//! would lose the turn: no `turn.end` for the devices, 404 for the producer, nothing in
//! history. Instead each turn is noted in the outbox file when it starts (unsynced: a process
//! crash keeps it, and it costs no fsync), its text is checkpointed by the sweep, and at the
//! next start every turn still noted is ended `failed` (`error: "gateway_restarted"`): stored
//! with the text of its last checkpoint, announced in the user's (new) log, and known again to
//! `GET /v1/turns/{id}`, `turn.sync` and the 409 of a producer that carries on.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::time::Instant;
use wire::{EventBody, TurnStatus};

use super::MemoryBackplane;
use super::turns::Turn;
use crate::backplane::{chars, final_turn};

/// The `error` of a turn ended by a restart.
const RESTARTED: &str = "gateway_restarted";

impl MemoryBackplane {
    /// Ends the turns a previous life left open; returns how many. Called once, before serving.
    pub async fn recover(&self) -> Result<usize, store_client::StoreError> {
        let open = self.outbox.interrupted().await?;
        let n = open.len();
        for (record, next_index) in open {
            let mut turn = Turn::new(
                record.turn_id.clone(),
                &record.user_id,
                record.conversation_id.clone(),
                (!record.meta.is_null()).then(|| record.meta.clone()),
            );
            turn.created_at_ms = record.created_at_ms;
            turn.created_at = crate::ids::rfc3339_ms(record.created_at_ms);
            turn.text_chars = chars(&record.text);
            turn.text.clone_from(&record.text);
            turn.truncated = record.truncated;
            turn.next_index = next_index;
            self.outbox.enqueue(&final_turn(record, Vec::new(), self.max_text)).await?;
            turn.status = TurnStatus::Failed;
            turn.ended_at = Some(Instant::now());
            let end = EventBody::TurnEnd {
                turn_id: turn.turn_id.clone(),
                status: TurnStatus::Failed,
                error: Some(serde_json::Value::from(RESTARTED)),
            };
            self.hub.publish(&turn.user_id, &end);
            tracing::warn!(turn_id = %turn.turn_id, "a turn left open by a crash is ended failed");
            self.turns.insert(turn.turn_id.clone(), Arc::new(Mutex::new(turn)));
        }
        if n > 0 {
            self.persister.wake();
        }
        Ok(n)
    }

    /// Writes the text of every streaming turn that grew since its last checkpoint (unsynced).
    pub(super) async fn checkpoint_open_turns(&self) {
        let grown = |t: &Turn| t.status == TurnStatus::Streaming && t.next_index != t.checkpointed;
        for turn in self.turns_where(grown) {
            let mut t = turn.lock().await;
            if t.status != TurnStatus::Streaming {
                continue;
            }
            match self.outbox.checkpoint(&t.turn_id, &t.text, t.truncated, t.next_index).await {
                Ok(()) => t.checkpointed = t.next_index,
                Err(e) => tracing::warn!(turn_id = %t.turn_id, error = %e, "checkpoint failed"),
            }
        }
    }
}
