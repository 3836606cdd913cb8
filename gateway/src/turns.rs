//! Turns in progress and recently ended (embedded mode): the state behind `turn.sync`,
//! `turn.cancel`, the 409s and idempotent creation.
//!
//! Every change to a turn and the log event that announces it happen under the turn's lock, so
//! delta indexes rise with seq and a snapshot's `next_index` matches `as_of_seq`.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;
use wire::api::{EventItem, TurnCreated, TurnState};
use wire::{ControlFrame, EventBody, TurnStatus};

use crate::hub::Hub;
use crate::ids;

/// Why a turn operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    #[error("no turn {0:?}")]
    NotFound(String),
    #[error("turn {0:?} already exists for another user or conversation")]
    Conflict(String),
    #[error("turn {turn_id:?} has already ended ({})", status.as_str())]
    Ended { turn_id: String, status: TurnStatus },
    #[error("{0}")]
    Invalid(String),
}

/// One turn.
#[derive(Debug)]
pub struct Turn {
    pub turn_id: String,
    pub user_id: Arc<str>,
    pub conversation_id: String,
    pub status: TurnStatus,
    pub text: String,
    /// Unicode scalar values in `text`, kept so `GET /v1/turns/{id}` need not count.
    pub text_chars: u64,
    pub next_index: u64,
    /// Seq of its `turn.start`, returned again on an idempotent create.
    pub start_seq: u64,
    pub created_at: String,
    /// When it ended; ended turns are forgotten `retention` later.
    pub ended_at: Option<Instant>,
}

/// The turns this node knows.
pub struct Turns {
    map: DashMap<String, Arc<Mutex<Turn>>>,
    retention: Duration,
}

/// A request to start a turn, validated.
pub struct NewTurn {
    pub user_id: String,
    pub conversation_id: String,
    pub turn_id: Option<String>,
    pub meta: Option<Value>,
}

impl Turns {
    pub fn new(retention: Duration) -> Self {
        Turns { map: DashMap::new(), retention }
    }

    /// Starts a turn and publishes its `turn.start`; the same turn again is answered with the
    /// first one (`created == false`).
    pub fn create(&self, hub: &Hub, req: NewTurn) -> Result<(TurnCreated, bool), TurnError> {
        let turn_id = req.turn_id.unwrap_or_else(|| ids::fresh("t"));
        let turn = Arc::new(Mutex::new(Turn {
            turn_id: turn_id.clone(),
            user_id: Arc::from(req.user_id.as_str()),
            conversation_id: req.conversation_id.clone(),
            status: TurnStatus::Streaming,
            text: String::new(),
            text_chars: 0,
            next_index: 0,
            start_seq: 0,
            created_at: ids::now_rfc3339(),
            ended_at: None,
        }));
        // Lock the new turn before it is visible, so nobody sees it without its turn.start.
        let mut guard = turn.lock();
        let existing = match self.map.entry(turn_id.clone()) {
            MapEntry::Occupied(o) => Some(o.get().clone()),
            MapEntry::Vacant(v) => {
                v.insert(turn.clone());
                None
            }
        };
        if let Some(existing) = existing {
            drop(guard);
            let t = existing.lock();
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
        guard.start_seq = hub.publish(&req.user_id, &start).seq;
        Ok((TurnCreated { turn_id, seq: guard.start_seq }, true))
    }

    pub fn get(&self, turn_id: &str) -> Option<Arc<Mutex<Turn>>> {
        self.map.get(turn_id).map(|t| t.clone())
    }

    /// The user's own turn, or `NotFound` (another user's turn is not revealed).
    fn own(&self, user: &str, turn_id: &str) -> Result<Arc<Mutex<Turn>>, TurnError> {
        self.get(turn_id)
            .filter(|t| *t.lock().user_id == *user)
            .ok_or_else(|| TurnError::NotFound(turn_id.to_owned()))
    }

    /// `turn.cancel` from a device of the turn's user.
    pub fn cancel(&self, hub: &Hub, user: &str, turn_id: &str) -> Result<u64, TurnError> {
        let turn = self.own(user, turn_id)?;
        let mut t = turn.lock();
        end(&mut t, hub, TurnStatus::Cancelled, None)
    }

    /// `turn.sync`: the text so far, consistent with the log position it reports.
    pub fn snapshot(
        &self,
        hub: &Hub,
        user: &str,
        turn_id: &str,
        reference: Option<Value>,
    ) -> Result<ControlFrame, TurnError> {
        let turn = self.own(user, turn_id)?;
        let t = turn.lock();
        Ok(ControlFrame::TurnSnapshot {
            turn_id: t.turn_id.clone(),
            conversation_id: t.conversation_id.clone(),
            status: t.status,
            text: t.text.clone(),
            next_index: t.next_index,
            as_of_seq: hub.head(user),
            reference,
        })
    }

    /// Forgets turns that ended longer ago than the retention.
    pub fn sweep(&self) {
        let retention = self.retention;
        self.map.retain(|_, t| t.lock().ended_at.is_none_or(|at| at.elapsed() < retention));
    }
}

/// Applies one producer item to a locked turn and publishes it; returns its seq.
pub fn apply(t: &mut Turn, hub: &Hub, item: EventItem) -> Result<u64, TurnError> {
    if t.status != TurnStatus::Streaming {
        return Err(TurnError::Ended { turn_id: t.turn_id.clone(), status: t.status });
    }
    let body = match item {
        EventItem::Delta(text) => {
            let index = t.next_index;
            t.next_index += 1;
            t.text.push_str(&text);
            t.text_chars += text.chars().count() as u64;
            EventBody::TurnDelta { turn_id: t.turn_id.clone(), index, text }
        }
        EventItem::Trace(trace) => {
            EventBody::TurnTrace { turn_id: t.turn_id.clone(), kind: trace.kind, data: trace.data }
        }
        EventItem::End(e) => {
            if !matches!(e.status, TurnStatus::Completed | TurnStatus::Failed) {
                return Err(TurnError::Invalid(
                    "\"end\".\"status\" must be \"completed\" or \"failed\"".into(),
                ));
            }
            return end(t, hub, e.status, e.error);
        }
    };
    Ok(hub.publish(&t.user_id, &body).seq)
}

fn end(
    t: &mut Turn,
    hub: &Hub,
    status: TurnStatus,
    error: Option<Value>,
) -> Result<u64, TurnError> {
    if t.status != TurnStatus::Streaming {
        return Err(TurnError::Ended { turn_id: t.turn_id.clone(), status: t.status });
    }
    t.status = status;
    t.ended_at = Some(Instant::now());
    let error =
        if status == TurnStatus::Failed { Some(error.unwrap_or(Value::Null)) } else { None };
    let body = EventBody::TurnEnd { turn_id: t.turn_id.clone(), status, error };
    Ok(hub.publish(&t.user_id, &body).seq)
}

impl Turn {
    pub fn state(&self) -> TurnState {
        TurnState {
            turn_id: self.turn_id.clone(),
            user_id: self.user_id.to_string(),
            conversation_id: self.conversation_id.clone(),
            status: self.status,
            next_index: self.next_index,
            text_len: self.text_chars,
        }
    }
}
