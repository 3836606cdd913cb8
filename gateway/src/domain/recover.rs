//! Turns that outlive a crash. Embedded mode keeps turn state in memory, so a `kill -9` mid-turn
//! would lose the turn: no `turn.end` for the devices, 404 for the producer, nothing in
//! history. Instead each turn is noted in the outbox file when it starts, its text is
//! checkpointed by the sweep, and at the next start every turn still noted is ended `failed`
//! (`error: "gateway_restarted"`): stored with the text of its last checkpoint, announced in
//! the user's (new) log, and known again to `GET /v1/turns/{id}`, `turn.sync` and the 409 of a
//! producer that carries on.

use wire::{EventBody, TurnStatus};

use super::Turns;
use super::turn::{TurnRec, record_name};
use crate::backplane::{Append, Event, Expect, Unavailable};

/// The `error` of a turn ended by a restart.
const RESTARTED: &str = "gateway_restarted";

impl Turns {
    /// Ends the turns a previous life left open; returns how many. Called once, before serving.
    pub async fn recover(&self) -> Result<usize, String> {
        let open = self.sink().interrupted().await?;
        let n = open.len();
        for (record, next_index) in open {
            self.end_interrupted(record, next_index).await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    async fn end_interrupted(
        &self,
        r: store_client::TurnRecord,
        next_index: u64,
    ) -> Result<(), Unavailable> {
        let meta = (!r.meta.is_null()).then(|| r.meta.clone());
        let mut rec = TurnRec::new(&r.user_id, &r.conversation_id, meta, r.created_at_ms);
        rec.next_index = next_index;
        rec.chars = super::chars(&r.text);
        rec.text_bytes = r.text.len();
        rec.truncated = r.truncated;
        rec.status = TurnStatus::Failed;
        rec.ended_ms = crate::backplane::now_ms();
        let copy = rec.finished(&r.turn_id, r.text.clone(), &[], self.max_text())?;
        self.sink().finishing(&r.user_id, &r.turn_id, Some(copy)).await?;
        let owner = format!("{}\n{}", r.user_id, r.conversation_id);
        self.log()
            .claim(
                &format!("turn:{}", r.turn_id),
                &owner,
                std::time::Duration::from_secs(24 * 3600),
            )
            .await?;
        let end = EventBody::TurnEnd {
            turn_id: r.turn_id.clone(),
            status: TurnStatus::Failed,
            error: Some(serde_json::Value::from(RESTARTED)),
        };
        let mut a =
            Append::to(&r.user_id, &record_name(&r.turn_id), Expect::Absent, vec![Event::of(&end)]);
        a.set = rec.fields();
        a.text = r.text;
        a.keep = self.sink().ended_keep();
        self.log().append_if(a).await?;
        self.sink().ended();
        tracing::warn!(turn_id = %r.turn_id, "a turn left open by a crash is ended failed");
        Ok(())
    }
}

impl super::Tasks {
    /// Ends the tasks a previous life left open as `failed` (`gateway_restarted`), stored and
    /// announced in the user's (new) log; returns how many. Called once, before serving.
    pub async fn recover(&self) -> Result<usize, String> {
        let open = self.sink().interrupted_tasks().await?;
        let n = open.len();
        for task in open {
            self.end_interrupted(task).await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }

    async fn end_interrupted(&self, mut task: wire::task::Task) -> Result<(), Unavailable> {
        let now = crate::backplane::now_ms();
        task.state = wire::task::TaskState::Failed;
        task.message = Some(RESTARTED.to_owned());
        task.updated_at = crate::ids::rfc3339_ms(now);
        task.artifacts = Some(Vec::new());
        let copy = store_client::FinalTask { task: task.clone(), updated_at_ms: now, seq: 0 };
        self.sink().finishing_task(&task.user_id, &task.task_id, Some(copy)).await?;
        // Its owner is known again at once (the claim died with the process).
        let owner = format!("{}\n{}", task.user_id, task.context_id);
        let key = super::tasks::claim_key(&task.task_id);
        self.log().claim(&key, &owner, super::tasks::CLAIM_TTL).await?;
        let event = EventBody::TaskStatus {
            task_id: task.task_id.clone(),
            context_id: task.context_id.clone(),
            state: task.state,
            message: task.message.clone(),
            timestamp: task.updated_at.clone(),
        };
        let a = Append::events(&task.user_id, vec![Event::of(&event)]);
        self.log().append_if(a).await?;
        self.sink().ended();
        tracing::warn!(task_id = %task.task_id, "a task left open by the previous run is ended failed");
        Ok(())
    }
}
