//! The task service: the rules of [`task`](super::task) run against the log, each change one
//! conditional append (decided again on the record the backend returns when it moved), a task
//! terminal is on its way to the store before its last `task.status` is published, and the
//! task hub lists what the log holds beside what the store holds.
//!
//! Each user has an index of the tasks not yet stored (a timer set `tasks:<user>`, by the time
//! of the last status change): the hub reads those from the log and the rest from the store,
//! and a task leaves the index once stored.

mod hub;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use store_client::{FinalTask, TurnStore};
use tokio::time::Instant;
use wire::task::{CreateTask, Task, TaskCreated, TaskItem, TaskState};

pub use hub::Which;
use hub::index;

use super::task::{By, TaskRec, fold, plan, record_name};
use super::{Applied, TaskError, TurnSink};
use crate::backplane::redis::Assembled;
use crate::backplane::{Append, Backplane, Blobs, Expect, Keep, Outcome, Unavailable, now_ms};

/// How long a task that is not terminal lives without a change (it is long-running work, but
/// not forever: an abandoned one goes).
pub const OPEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a task id → owner claim lives (past it, the store knows the owner).
pub(super) const CLAIM_TTL: Duration = OPEN_TTL;
/// How long a change is decided again after the record moved under it.
const RETRY_FOR: Duration = Duration::from_secs(5);

pub struct TasksConfig {
    /// Bytes of artifact chunks one task may hold.
    pub max_bytes: u64,
    /// Tasks of one user not yet stored (open, or terminal and waiting for the store).
    pub max_open: usize,
    /// How long a stored task's record (and its id's idempotency in the log) is kept.
    pub retention: Duration,
}

pub struct Tasks {
    log: Arc<dyn Backplane>,
    sink: Arc<dyn TurnSink>,
    store: Arc<dyn TurnStore>,
    cfg: TasksConfig,
    /// The last record this node saw of each open task it works on, so a producer's batch
    /// costs one round trip, not two (a stale one is refused by its version and decided again
    /// on the record the backend returns).
    known: DashMap<String, (TaskRec, Instant)>,
}

/// Known records unused this long are forgotten.
const KNOWN_FOR: Duration = Duration::from_secs(300);

pub(super) fn claim_key(task_id: &str) -> String {
    format!("task:{task_id}")
}

impl Tasks {
    pub fn new(
        log: Arc<dyn Backplane>,
        sink: Arc<dyn TurnSink>,
        store: Arc<dyn TurnStore>,
        cfg: TasksConfig,
    ) -> Self {
        Tasks { log, sink, store, cfg, known: DashMap::new() }
    }

    /// Creates a task and publishes its first `task.status`; the same task again (same user and
    /// context) is answered with the first (`false`), another's is `Exists`.
    pub async fn create(
        &self,
        req: CreateTask,
        task_id: String,
    ) -> Result<(TaskCreated, bool), TaskError> {
        let owner = format!("{}\n{}", req.user_id, req.context_id);
        let prev = self.log.claim(&claim_key(&task_id), &owner, CLAIM_TTL).await?;
        if prev.as_deref().is_some_and(|p| p != owner) {
            return Err(TaskError::Exists(task_id));
        }
        if prev.is_some()
            && let Some(stored) = self.stored(&task_id).await?
        {
            // Stored long ago, its record gone: the same task, nothing published.
            return Ok((TaskCreated { task_id, seq: stored.seq }, false));
        }
        let mut open = self.log.due(&index(&req.user_id), i64::MAX, self.cfg.max_open).await?;
        if open.len() >= self.cfg.max_open && !open.contains(&task_id) {
            open = self.prune(&req.user_id, open).await?;
            if open.len() >= self.cfg.max_open {
                return Err(TaskError::TooMany(self.cfg.max_open));
            }
        }
        let now = now_ms();
        let rec = TaskRec {
            user_id: req.user_id,
            context_id: req.context_id,
            title: req.title,
            state: req.state.unwrap_or(TaskState::Submitted),
            message: None,
            created_ms: now,
            updated_ms: now,
            metadata: req.metadata.unwrap_or_else(|| serde_json::json!({})),
            bytes: 0,
            version: 0,
            first_seq: 0,
            last_seq: 0,
        };
        let name = record_name(&task_id);
        let mut a =
            Append::to(&rec.user_id, &name, Expect::Absent, vec![rec.status_event(&task_id)]);
        a.set = rec.fields();
        a.keep = Keep::For(OPEN_TTL);
        match self.log.append_if(a).await? {
            Outcome::Appended { first, .. } => {
                self.sink.opened_task(&rec.task(&task_id, None)).await;
                self.index(&rec.user_id, &task_id, now).await;
                Ok((TaskCreated { task_id, seq: first }, true))
            }
            Outcome::Refused(Some(r)) => {
                let had = TaskRec::parse(&r)?;
                if had.user_id == rec.user_id && had.context_id == rec.context_id {
                    Ok((TaskCreated { task_id, seq: had.first_seq }, false))
                } else {
                    Err(TaskError::Exists(task_id))
                }
            }
            Outcome::Refused(None) => Err(TaskError::Exists(task_id)),
        }
    }

    /// Applies producer items in order; stops at the first refused (after a terminal state).
    pub async fn apply(&self, task_id: &str, items: Vec<TaskItem>) -> Applied<TaskError> {
        match self.change(task_id, None, items, By::Producer).await {
            Ok(a) => a,
            Err(e) => Applied { refused: Some(e), ..Applied::default() },
        }
    }

    /// The task's user cancels it: the task as it is after.
    pub async fn cancel(&self, user: &str, task_id: &str) -> Result<Task, TaskError> {
        let item =
            TaskItem::Status(wire::task::StatusItem { state: TaskState::Canceled, message: None });
        let a = self.change(task_id, Some(user), vec![item], By::Owner).await?;
        if let Some(e) = a.refused {
            return Err(e);
        }
        Ok(self.snapshot(user, task_id).await?.0)
    }

    /// Whether the producer may stream to the task now (`Ok`: it is open).
    pub async fn check_open(&self, task_id: &str) -> Result<(), TaskError> {
        let user = self.owner(task_id).await?;
        match self.log.read(&user, &record_name(task_id), Blobs::default()).await? {
            Some(r) if !TaskRec::parse(&r.record)?.state.is_terminal() => Ok(()),
            Some(_) => Err(TaskError::Ended(task_id.to_owned())),
            None => Err(self.gone(task_id, By::Producer, &user).await),
        }
    }

    async fn change(
        &self,
        task_id: &str,
        user: Option<&str>,
        items: Vec<TaskItem>,
        by: By,
    ) -> Result<Applied<TaskError>, TaskError> {
        let mut rec = match self.known.get(task_id).map(|k| k.0.clone()) {
            Some(rec) if user.is_none_or(|u| u == rec.user_id) => rec,
            _ => {
                let user = match user {
                    Some(u) => u.to_owned(),
                    None => self.owner(task_id).await?,
                };
                let read = self.log.read(&user, &record_name(task_id), Blobs::default()).await?;
                let Some(read) = read else { return Err(self.gone(task_id, by, &user).await) };
                TaskRec::parse(&read.record)?
            }
        };
        let user = rec.user_id.clone();
        let started = Instant::now();
        while started.elapsed() < RETRY_FOR {
            let mut p = plan(task_id, &rec, items.clone(), by, self.cfg.max_bytes, now_ms());
            if p.accepted == 0 {
                return Ok(Applied { accepted: 0, last_seq: None, refused: p.refused });
            }
            let ends = p.ends();
            if ends {
                let copy = match self.sink.wants_copy() {
                    true => Some(self.copy(task_id, &p).await?),
                    false => None,
                };
                self.sink.finishing_task(&user, task_id, copy).await?;
                p.append.keep = self.sink.ended_keep();
            }
            let status_changed = p.next.updated_ms != rec.updated_ms || ends;
            let updated_ms = p.next.updated_ms;
            match self.log.append_if(p.append).await? {
                Outcome::Appended { last, version, .. } => {
                    let mut next = p.next;
                    (next.version, next.last_seq) = (version, last);
                    if ends {
                        self.known.remove(task_id);
                    } else {
                        self.known.insert(task_id.to_owned(), (next, Instant::now()));
                    }
                    if status_changed {
                        self.index(&user, task_id, updated_ms).await;
                    }
                    if ends {
                        self.sink.ended();
                    }
                    return Ok(Applied {
                        accepted: p.accepted,
                        last_seq: Some(last),
                        refused: p.refused,
                    });
                }
                Outcome::Refused(Some(r)) => rec = TaskRec::parse(&r)?,
                Outcome::Refused(None) => {
                    self.known.remove(task_id);
                    return Err(TaskError::NotFound(task_id.to_owned()));
                }
            }
        }
        Err(Unavailable {
            code: "busy",
            message: "the task changed too often to apply this; try again".into(),
        }
        .into())
    }

    /// The terminal task a plan makes: the chunks so far and the plan's.
    async fn copy(&self, task_id: &str, p: &super::task::Plan) -> Result<FinalTask, TaskError> {
        let blobs = Blobs { text: false, items: true };
        let read = self.log.read(&p.next.user_id, &record_name(task_id), blobs).await?;
        let mut chunks = read.map(|r| r.items).unwrap_or_default();
        chunks.extend(p.append.items.iter().cloned());
        Ok(p.next.finished(task_id, &chunks))
    }

    /// Why a task of `user` without a record in the log refuses a change: stored (ended), or
    /// unknown (another user's looks the same).
    async fn gone(&self, task_id: &str, by: By, user: &str) -> TaskError {
        match self.stored(task_id).await {
            Ok(Some(t)) if t.task.user_id == user => match by {
                By::Producer => TaskError::Ended(task_id.to_owned()),
                By::Owner => TaskError::NotCancelable(task_id.to_owned()),
            },
            Ok(_) => TaskError::NotFound(task_id.to_owned()),
            Err(e) => e,
        }
    }

    async fn stored(&self, task_id: &str) -> Result<Option<FinalTask>, TaskError> {
        self.store.task(task_id).await.map_err(|e| {
            tracing::warn!(%task_id, error = %e, "the store cannot read a task");
            TaskError::Unavailable(Unavailable {
                code: "store_unavailable",
                message: "the store cannot be reached now".into(),
            })
        })
    }

    /// The user whose task this is: from the claim made at its creation, else the store.
    pub async fn owner(&self, task_id: &str) -> Result<String, TaskError> {
        if let Some(v) = self.log.lookup(&claim_key(task_id)).await?
            && let Some(user) = v.split('\n').next()
        {
            return Ok(user.to_owned());
        }
        match self.stored(task_id).await? {
            Some(t) => Ok(t.task.user_id),
            None => Err(TaskError::NotFound(task_id.to_owned())),
        }
    }

    /// The task with its artifacts, as of a position in its user's log (`task.get`); only
    /// `user`'s own. A task stored long ago (its record gone) is `as_of_seq` 0: nothing of it
    /// follows in the log.
    pub async fn snapshot(&self, user: &str, task_id: &str) -> Result<(Task, u64), TaskError> {
        let blobs = Blobs { text: false, items: true };
        if let Some(read) = self.log.read(user, &record_name(task_id), blobs).await? {
            let rec = TaskRec::parse(&read.record)?;
            return Ok((rec.task(task_id, Some(fold(&read.items))), read.head));
        }
        match self.stored(task_id).await? {
            Some(t) if t.task.user_id == user => Ok((t.task, 0)),
            _ => Err(TaskError::NotFound(task_id.to_owned())),
        }
    }

    /// A terminal task, read for the store (the Redis outbox).
    pub async fn assemble(&self, user: &str, task_id: &str) -> Result<Assembled, Unavailable> {
        let blobs = Blobs { text: false, items: true };
        let Some(read) = self.log.read(user, &record_name(task_id), blobs).await? else {
            return Ok(Assembled::Gone);
        };
        let rec = TaskRec::parse(&read.record)?;
        if !rec.state.is_terminal() {
            return Ok(Assembled::Streaming);
        }
        let done = rec.finished(task_id, &read.items);
        Ok(Assembled::Ended(Box::new(store_client::Final::Task(done))))
    }

    /// Stored: out of the hub's index, and its record lives only the retention period.
    pub async fn stored_now(&self, user: &str, task_id: &str) -> Result<(), Unavailable> {
        self.log.unwatch(&index(user), task_id).await?;
        self.log.keep(user, &record_name(task_id), Keep::For(self.cfg.retention)).await
    }

    /// Housekeeping: forgets the known records of tasks not worked on lately.
    pub fn sweep(&self) {
        self.known.retain(|_, (_, used)| used.elapsed() < KNOWN_FOR);
    }

    /// Where ended tasks are stored (the domain contract stores what an outbox would).
    pub fn store(&self) -> &Arc<dyn TurnStore> {
        &self.store
    }

    pub(super) fn log(&self) -> &Arc<dyn Backplane> {
        &self.log
    }

    pub(super) fn sink(&self) -> &Arc<dyn TurnSink> {
        &self.sink
    }
}
