//! Redis mode's sink: the outbox holds only a finished turn's name; its state is in Redis
//! already, and any node stores it from there.

use std::sync::Arc;

use async_trait::async_trait;
use store_client::{FinalTask, FinalTurn, KeptNote, Outbox, Persister};

use super::{TurnSink, note_not_dropped};
use crate::backplane::redis::RedisOutbox;
use crate::backplane::{Keep, Unavailable};

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
