//! What the Redis outbox stores, read from the log: its keys name turns, or tasks
//! (`task/<id>`), and each service assembles its own.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Tasks, Turns};
use crate::backplane::Unavailable;
use crate::backplane::redis::{Assembled, Finished};

pub struct Finishers {
    pub turns: Arc<Turns>,
    pub tasks: Arc<Tasks>,
}

#[async_trait]
impl Finished for Finishers {
    async fn assemble(&self, user: &str, key: &str) -> Result<Assembled, Unavailable> {
        match key.strip_prefix("task/") {
            Some(task_id) => self.tasks.assemble(user, task_id).await,
            None => self.turns.assemble(user, key).await,
        }
    }

    async fn stored(&self, user: &str, key: &str) -> Result<(), Unavailable> {
        match key.strip_prefix("task/") {
            Some(task_id) => self.tasks.stored_now(user, task_id).await,
            None => self.turns.stored(user, key).await,
        }
    }
}
