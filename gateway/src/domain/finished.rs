//! What the Redis outbox stores, read from the log: its keys name turns, tasks (`task/<id>`)
//! or notifications the inbox could not take (`note/<id>`), and each service assembles its own.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Notifications, Tasks, Turns};
use crate::backplane::Unavailable;
use crate::backplane::redis::{Assembled, Finished};

/// The services the Redis outbox reads finished work through.
pub struct Finishers {
    pub turns: Arc<Turns>,
    pub tasks: Arc<Tasks>,
    pub notes: Arc<Notifications>,
}

#[async_trait]
impl Finished for Finishers {
    async fn assemble(&self, user: &str, key: &str) -> Result<Assembled, Unavailable> {
        if let Some(id) = key.strip_prefix("note/") {
            return self.notes.assemble(user, id).await;
        }
        match key.strip_prefix("task/") {
            Some(task_id) => self.tasks.assemble(user, task_id).await,
            None => self.turns.assemble(user, key).await,
        }
    }

    async fn stored(&self, user: &str, key: &str) -> Result<(), Unavailable> {
        if let Some(id) = key.strip_prefix("note/") {
            return self.notes.stored(user, id).await;
        }
        match key.strip_prefix("task/") {
            Some(task_id) => self.tasks.stored_now(user, task_id).await,
            None => self.turns.stored(user, key).await,
        }
    }
}
