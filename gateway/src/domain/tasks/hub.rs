//! The task hub: a user's tasks, those not yet stored read from the log (through the user's
//! index of them) and the rest from the store, merged into one page.

use futures_util::StreamExt;
use store_client::TaskCursor;
use wire::task::{Task, TaskState};

use super::Tasks;
use crate::backplane::{Blobs, Unavailable};
use crate::domain::TaskError;
use crate::domain::task::{TaskRec, record_name};

/// Index entries read at once by the hub.
const READ_AHEAD: usize = 32;

/// Which tasks a list wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Active,
    Terminal,
    All,
}

impl Which {
    fn takes(self, s: TaskState) -> bool {
        match self {
            Which::Active => !s.is_terminal(),
            Which::Terminal => s.is_terminal(),
            Which::All => true,
        }
    }
}

/// The user's index of tasks not yet stored.
pub(super) fn index(user: &str) -> String {
    format!("tasks:{user}")
}

impl Tasks {
    /// Notes the task in its user's index at its last status change (a failure is logged:
    /// the hub misses it until its next change or its storage).
    pub(super) async fn index(&self, user: &str, task_id: &str, at_ms: i64) {
        if let Err(e) = self.log.watch(&index(user), task_id, at_ms).await {
            tracing::warn!(%task_id, error = %e, "cannot index a task for the hub");
        }
    }

    /// Takes out of `user`'s index the tasks the store already holds (or whose record is
    /// gone): where no outbox tells the domain (embedded mode), the index is trimmed when it
    /// reaches its cap. Returns what is left.
    pub(super) async fn prune(
        &self,
        user: &str,
        open: Vec<String>,
    ) -> Result<Vec<String>, TaskError> {
        let mut left = Vec::with_capacity(open.len());
        for id in open {
            let read = self.log.read(user, &record_name(&id), Blobs::default()).await?;
            let ended = match &read {
                None => true,
                Some(r) => TaskRec::parse(&r.record)?.state.is_terminal(),
            };
            if ended && (read.is_none() || self.stored(&id).await?.is_some()) {
                self.log.unwatch(&index(user), &id).await?;
            } else {
                left.push(id);
            }
        }
        Ok(left)
    }

    /// A page of `user`'s tasks (no artifacts), each at its place, newest status change first,
    /// strictly after `after`; the cursor of the next page, if any.
    pub async fn list(
        &self,
        user: &str,
        which: Which,
        context: Option<&str>,
        limit: usize,
        after: Option<&TaskCursor>,
    ) -> Result<(Vec<(TaskCursor, Task)>, Option<TaskCursor>), TaskError> {
        let open = self.log.due(&index(user), i64::MAX, self.cfg.max_open).await?;
        let reads = futures_util::stream::iter(open)
            .map(|id| async move {
                let r = self.log.read(user, &record_name(&id), Blobs::default()).await;
                (id, r)
            })
            .buffer_unordered(READ_AHEAD)
            .collect::<Vec<_>>()
            .await;
        let mut page: Vec<(TaskCursor, Task)> = Vec::new();
        for (id, read) in reads {
            let Some(read) = read? else {
                // Its record is gone (stored, and past its retention): out of the index.
                self.log.unwatch(&index(user), &id).await?;
                continue;
            };
            let rec = TaskRec::parse(&read.record)?;
            let c = TaskCursor { updated_at_ms: rec.updated_ms, seq: rec.first_seq, task_id: id };
            if which.takes(rec.state)
                && context.is_none_or(|c| c == rec.context_id)
                && after.is_none_or(|a| c < *a)
            {
                page.push((c.clone(), rec.task(&c.task_id, None)));
            }
        }
        if which != Which::Active {
            let stored = self.store.task_page(user, context, limit as u32 + 1, after).await;
            let stored = stored.map_err(|e| {
                tracing::warn!(error = %e, "the store cannot list tasks");
                TaskError::Unavailable(Unavailable {
                    code: "store_unavailable",
                    message: "the store cannot be reached now".into(),
                })
            })?;
            for t in stored {
                if !page.iter().any(|(c, _)| c.task_id == t.task.task_id) {
                    page.push((t.cursor(), t.task));
                }
            }
        }
        page.sort_by(|a, b| b.0.cmp(&a.0));
        let next = (page.len() > limit).then(|| page[limit - 1].0.clone());
        page.truncate(limit);
        Ok((page, next))
    }
}
