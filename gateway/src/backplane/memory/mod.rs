//! Embedded mode: the per-user logs are the hub's own rings, turns and dedup keys are maps in
//! this process, and a finalised turn goes to the embedded (SQLite) outbox before its
//! `turn.end` is published.

mod recover;
mod turns;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use store_client::{EmbeddedOutbox, Persister, Trace};
use tokio::sync::Mutex;
use tokio::time::Instant;
use wire::api::{CreateNotification, EventItem, NotificationAccepted, TurnCreated, TurnState};
use wire::{EventBody, TurnStatus};

use super::{
    Applied, Backplane, NewTurn, Snapshot, TurnError, Unavailable, final_turn, notification,
};
use crate::hub::{Attachment, Entry, Hub, Reservation, ResumeFrom};
use crate::ids;
use turns::Turn;

/// Everything in this process.
pub struct MemoryBackplane {
    hub: Arc<Hub>,
    turns: DashMap<String, Arc<Mutex<Turn>>>,
    /// How long an ended turn (and so its idempotency) is remembered.
    turn_retention: Duration,
    /// How long a streaming turn may go without an event.
    turn_idle: Duration,
    /// `(user, dedup_key)` → the first answer, for the dedup window.
    dedup: DashMap<(Arc<str>, String), (NotificationAccepted, Instant)>,
    dedup_window: Duration,
    outbox: Arc<EmbeddedOutbox>,
    /// Woken when a turn enters the outbox, so it is stored at once.
    persister: Arc<Persister>,
    /// The longest turn text kept (and stored); longer is cut and flagged.
    max_text: usize,
}

/// The settings [`MemoryBackplane`] takes.
pub struct MemoryLimits {
    pub turn_retention: Duration,
    /// A streaming turn with no event for this long is ended `failed` (`idle_timeout`).
    pub turn_idle: Duration,
    pub dedup_window: Duration,
    pub max_text: usize,
}

impl MemoryBackplane {
    pub fn new(
        hub: Arc<Hub>,
        outbox: Arc<EmbeddedOutbox>,
        persister: Arc<Persister>,
        limits: MemoryLimits,
    ) -> Self {
        MemoryBackplane {
            hub,
            turns: DashMap::new(),
            turn_retention: limits.turn_retention,
            turn_idle: limits.turn_idle,
            dedup: DashMap::new(),
            dedup_window: limits.dedup_window,
            outbox,
            persister,
            max_text: limits.max_text,
        }
    }

    /// The user's own turn, or `NotFound` (another user's turn is not revealed).
    async fn own(&self, user: &str, turn_id: &str) -> Result<Arc<Mutex<Turn>>, TurnError> {
        let turn = self.turns.get(turn_id).map(|t| t.clone());
        if let Some(t) = turn
            && *t.lock().await.user_id == *user
        {
            return Ok(t);
        }
        Err(TurnError::NotFound(turn_id.to_owned()))
    }

    /// Applies one item to a locked turn and publishes its event; returns its seq.
    async fn apply_one(&self, t: &mut Turn, item: EventItem) -> Result<u64, TurnError> {
        if t.status != TurnStatus::Streaming {
            return Err(TurnError::Ended { turn_id: t.turn_id.clone(), status: t.status });
        }
        t.last_event = Instant::now();
        let body = match item {
            EventItem::Delta(text) => {
                let index = t.delta(&text, self.max_text);
                EventBody::TurnDelta { turn_id: t.turn_id.clone(), index, text }
            }
            EventItem::Trace(trace) => {
                t.traces.push(Trace { kind: trace.kind.clone(), data: trace.data.clone() });
                EventBody::TurnTrace {
                    turn_id: t.turn_id.clone(),
                    kind: trace.kind,
                    data: trace.data,
                }
            }
            EventItem::End(e) => {
                if !matches!(e.status, TurnStatus::Completed | TurnStatus::Failed) {
                    return Err(TurnError::Invalid(
                        "\"end\".\"status\" must be \"completed\" or \"failed\"".into(),
                    ));
                }
                return self.end(t, e.status, e.error).await;
            }
        };
        Ok(self.hub.publish(&t.user_id, &body).seq)
    }

    /// Ends a locked turn: the finalised turn is in the outbox, durably, before `turn.end` is
    /// published; if the outbox cannot take it, the turn stays open and the caller gets 503.
    async fn end(
        &self,
        t: &mut Turn,
        status: TurnStatus,
        error: Option<serde_json::Value>,
    ) -> Result<u64, TurnError> {
        if t.status != TurnStatus::Streaming {
            return Err(TurnError::Ended { turn_id: t.turn_id.clone(), status: t.status });
        }
        let traces = std::mem::take(&mut t.traces);
        let finished = final_turn(t.final_record(status), traces, self.max_text);
        if let Err(e) = self.outbox.enqueue(&finished).await {
            t.traces = finished.traces;
            tracing::error!(turn_id = %t.turn_id, error = %e, "the outbox cannot take a finished turn");
            return Err(Unavailable {
                code: "outbox_unavailable",
                message: "the turn could not be recorded for storage now; try the end again".into(),
            }
            .into());
        }
        self.persister.wake();
        t.status = status;
        t.ended_at = Some(Instant::now());
        let error =
            (status == TurnStatus::Failed).then(|| error.unwrap_or(serde_json::Value::Null));
        let body = EventBody::TurnEnd { turn_id: t.turn_id.clone(), status, error };
        Ok(self.hub.publish(&t.user_id, &body).seq)
    }

    /// The turns `pred` picks, looked at without waiting: one busy now is not idle, and is looked
    /// at again by the next sweep. The caller locks each and checks again.
    fn turns_where(&self, pred: impl Fn(&Turn) -> bool) -> Vec<Arc<Mutex<Turn>>> {
        self.turns
            .iter()
            .filter(|e| e.value().try_lock().is_ok_and(|t| pred(&t)))
            .map(|e| e.value().clone())
            .collect()
    }

    /// Ends every turn that streamed nothing for `turn_idle` as `failed` (`idle_timeout`): a
    /// producer that died mid-turn leaves neither the devices nor the memory waiting forever.
    async fn end_idle_turns(&self) {
        let idle = self.turn_idle;
        let stale = |t: &Turn| t.status == TurnStatus::Streaming && t.last_event.elapsed() >= idle;
        for turn in self.turns_where(stale) {
            let mut t = turn.lock().await;
            if !stale(&t) {
                continue; // an event came meanwhile
            }
            let error = serde_json::Value::from("idle_timeout");
            match self.end(&mut t, TurnStatus::Failed, Some(error)).await {
                Ok(_) => {
                    tracing::info!(turn_id = %t.turn_id, "ended a turn idle past GATEWAY_TURN_IDLE_TIMEOUT_MS")
                }
                Err(e) => {
                    tracing::warn!(turn_id = %t.turn_id, error = %e, "cannot end an idle turn; next sweep")
                }
            }
        }
    }

    fn send_notification(&self, req: CreateNotification) -> NotificationAccepted {
        let id = ids::fresh("n");
        let user = req.user_id.clone();
        let seq = self.hub.publish(&user, &notification(&id, req)).seq;
        NotificationAccepted { id, seq }
    }
}

#[async_trait]
impl Backplane for MemoryBackplane {
    fn mode(&self) -> &'static str {
        "embedded"
    }

    async fn create_turn(&self, req: NewTurn) -> Result<(TurnCreated, bool), TurnError> {
        let turn = Arc::new(Mutex::new(Turn::new(
            req.turn_id.clone(),
            &req.user_id,
            req.conversation_id.clone(),
            req.meta.clone(),
        )));
        // Locked before it is visible, so nobody sees it without its turn.start.
        let mut guard = turn.clone().lock_owned().await;
        let existing = match self.turns.entry(req.turn_id.clone()) {
            MapEntry::Occupied(o) => Some(o.get().clone()),
            MapEntry::Vacant(v) => {
                v.insert(turn);
                None
            }
        };
        let turn_id = req.turn_id;
        if let Some(existing) = existing {
            drop(guard);
            let t = existing.lock().await;
            if *t.user_id == *req.user_id && t.conversation_id == req.conversation_id {
                return Ok((TurnCreated { turn_id, seq: t.start_seq }, false));
            }
            return Err(TurnError::Conflict(turn_id));
        }
        let start = EventBody::TurnStart {
            turn_id: turn_id.clone(),
            conversation_id: req.conversation_id,
            created_at: guard.created_at.clone(),
            meta: req.meta,
        };
        guard.start_seq = self.hub.publish(&req.user_id, &start).seq;
        // Noted (unsynced, a crash of the process keeps it) so a restart ends it, not loses it.
        if let Err(e) = self.outbox.open_turn(&guard.final_record(TurnStatus::Streaming)).await {
            tracing::warn!(turn_id = %turn_id, error = %e, "cannot note an open turn");
        }
        Ok((TurnCreated { turn_id, seq: guard.start_seq }, true))
    }

    async fn apply(&self, turn_id: &str, items: Vec<EventItem>) -> Applied {
        let mut out = Applied::default();
        let Some(turn) = self.turns.get(turn_id).map(|t| t.clone()) else {
            out.refused = Some(TurnError::NotFound(turn_id.to_owned()));
            return out;
        };
        let mut t = turn.lock().await;
        for item in items {
            match self.apply_one(&mut t, item).await {
                Ok(seq) => {
                    out.accepted += 1;
                    out.last_seq = Some(seq);
                }
                Err(e) => {
                    out.refused = Some(e);
                    break;
                }
            }
        }
        out
    }

    async fn cancel(&self, user: &str, turn_id: &str) -> Result<u64, TurnError> {
        let turn = self.own(user, turn_id).await?;
        let mut t = turn.lock().await;
        self.end(&mut t, TurnStatus::Cancelled, None).await
    }

    async fn snapshot(&self, user: &str, turn_id: &str) -> Result<Snapshot, TurnError> {
        let turn = self.own(user, turn_id).await?;
        let t = turn.lock().await;
        // Under the turn's lock no event of this turn can be published, so the head is exact.
        Ok(t.snapshot(self.hub.head(user)))
    }

    async fn turn(&self, turn_id: &str) -> Result<TurnState, TurnError> {
        let turn = self.turns.get(turn_id).map(|t| t.clone());
        match turn {
            Some(t) => Ok(t.lock().await.state()),
            None => Err(TurnError::NotFound(turn_id.to_owned())),
        }
    }

    async fn notify(
        &self,
        req: CreateNotification,
    ) -> Result<(NotificationAccepted, bool), Unavailable> {
        let Some(key) = req.dedup_key.clone() else {
            return Ok((self.send_notification(req), true));
        };
        // The map entry stays locked while publishing, so two racing requests publish once.
        Ok(match self.dedup.entry((Arc::from(req.user_id.as_str()), key)) {
            MapEntry::Occupied(mut o) => {
                if o.get().1.elapsed() < self.dedup_window {
                    return Ok((o.get().0.clone(), false));
                }
                let accepted = self.send_notification(req);
                o.insert((accepted.clone(), Instant::now()));
                (accepted, true)
            }
            MapEntry::Vacant(v) => {
                let accepted = self.send_notification(req);
                v.insert((accepted.clone(), Instant::now()));
                (accepted, true)
            }
        })
    }

    async fn mark_read(&self, user: &str, id: &str) -> Result<u64, Unavailable> {
        Ok(self.hub.publish(user, &EventBody::NotificationRead { id: id.to_owned() }).seq)
    }

    async fn attach(
        &self,
        reservation: Reservation,
        resume: Option<&ResumeFrom>,
    ) -> Result<Attachment, Unavailable> {
        Ok(self.hub.attach(reservation, resume))
    }

    fn detach(&self, user: &str, endpoint: u64) {
        self.hub.detach(user, endpoint);
    }

    async fn missed(
        &self,
        user: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<Option<Vec<Arc<Entry>>>, Unavailable> {
        Ok(self.hub.retained(user, epoch, after, upto))
    }

    async fn ready(&self) -> Result<(), Unavailable> {
        Ok(())
    }

    async fn sweep(&self) {
        self.end_idle_turns().await;
        self.checkpoint_open_turns().await;
        let retired = self.hub.sweep();
        let retention = self.turn_retention;
        // `try_lock`: a turn busy right now is not ending; it is looked at next sweep.
        self.turns.retain(|_, t| {
            t.try_lock().map_or(true, |t| t.ended_at.is_none_or(|at| at.elapsed() < retention))
        });
        let window = self.dedup_window;
        self.dedup.retain(|_, (_, at)| at.elapsed() < window);
        tracing::debug!(retired, users = self.hub.users(), "swept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::contract::{self, Factory, Fixture, Node};
    use crate::hub::Retention;
    use crate::metrics::Metrics;
    use store_client::{EmbeddedStore, RetryPolicy};

    /// Removes a directory when dropped.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    struct Memory;

    #[async_trait]
    impl Factory for Memory {
        async fn make(&self, retention: usize) -> Fixture {
            let metrics = Arc::new(Metrics::new());
            let retention = Retention {
                count: retention,
                age: Duration::from_secs(3600),
                bytes: 1 << 30,
                node_bytes: 1 << 40,
            };
            let hub = Arc::new(Hub::new(retention, 32, 1024, metrics));
            let dir = std::env::temp_dir().join(format!("gw-contract-{:x}", rand::random::<u64>()));
            let outbox = Arc::new(EmbeddedOutbox::open(&dir).await.unwrap());
            let store = Arc::new(EmbeddedStore::open(&dir.join("store")).await.unwrap());
            let persister = Arc::new(Persister::new(outbox.clone(), store, RetryPolicy::default()));
            let limits = MemoryLimits {
                turn_retention: Duration::from_secs(3600),
                turn_idle: Duration::from_secs(600),
                dedup_window: Duration::from_secs(3600),
                max_text: 1 << 20,
            };
            let backplane =
                Arc::new(MemoryBackplane::new(hub.clone(), outbox.clone(), persister, limits));
            let node = Node { backplane, hub };
            Fixture { a: node.clone(), b: node, outbox, guard: Some(Box::new(TempDir(dir))) }
        }
    }

    #[tokio::test]
    async fn passes_the_backplane_contract() {
        contract::run_all(&Memory).await;
    }
}
