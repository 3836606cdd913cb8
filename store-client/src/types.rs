//! What is stored and what history returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wire::TurnStatus;

use crate::cursor::Cursor;

/// A turn once it ended, as the gateway assembled it: the record history shows, and its traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalTurn {
    pub turn: TurnRecord,
    /// Reasoning, tool calls, agent outputs: stored apart, never loaded with history.
    pub traces: Vec<Trace>,
    /// The W3C `traceparent` of the request that created the turn, when traces are exported:
    /// the store write joins that trace. Not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// What an outbox entry holds: a finished turn, a terminal task, or a notification the inbox
/// could not take when it was sent (older entries, written before tasks existed, read as turns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Final {
    Turn(FinalTurn),
    Task(crate::FinalTask),
    Note(KeptNote),
}

/// A notification kept for the inbox while the store was down, with the push call its delivery
/// owes an offline user: that call is queued in the store's push outbox (also down) once the
/// notification is stored, so the push is late, not lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptNote {
    #[serde(flatten)]
    pub note: crate::InboxRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<crate::PushEntry>,
}

impl Final {
    /// The entry's key in an outbox: the turn id, or `task/<id>` (ids never hold `/`).
    pub fn key(&self) -> String {
        match self {
            Final::Turn(t) => t.turn.turn_id.clone(),
            Final::Task(t) => task_key(&t.task.task_id),
            Final::Note(n) => note_key(&n.note.id),
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            Final::Turn(t) => &t.turn.user_id,
            Final::Task(t) => &t.task.user_id,
            Final::Note(n) => &n.note.user_id,
        }
    }
}

/// A notification's outbox key.
pub fn note_key(id: &str) -> String {
    format!("note/{id}")
}

/// A task's outbox key.
pub fn task_key(task_id: &str) -> String {
    format!("task/{task_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub kind: String,
    pub data: Value,
}

/// A turn as history shows it (no traces).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub turn_id: String,
    pub conversation_id: String,
    pub user_id: String,
    /// `completed`, `cancelled` or `failed`.
    pub status: TurnStatus,
    pub text: String,
    /// The text was cut to the configured limit (at a character boundary).
    pub truncated: bool,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub completed_at_ms: i64,
    pub meta: Value,
}

/// One page of history, newest first; `next` continues with older turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub turns: Vec<TurnRecord>,
    pub next: Option<Cursor>,
}

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Inserted,
    /// The same turn was stored before: nothing changed.
    AlreadyStored,
    /// Its conversation was deleted after the turn began: not stored, on purpose.
    Discarded,
}

impl FinalTurn {
    /// Cuts `text` to at most `max_bytes` at a character boundary, flagging it; a turn over the
    /// limit is stored truncated, never dropped.
    pub fn limit_text(&mut self, max_bytes: usize) {
        let t = &mut self.turn;
        if t.text.len() <= max_bytes {
            return;
        }
        let mut cut = max_bytes;
        while !t.text.is_char_boundary(cut) {
            cut -= 1;
        }
        t.text.truncate(cut);
        t.truncated = true;
    }

    /// A digest of everything stored, to tell a repeat from a conflicting write.
    pub(crate) fn content_hash(&self) -> String {
        content_hash(self)
    }
}

/// A digest of a stored value's canonical JSON form: FNV-1a (stable across processes and
/// Rust versions), plus its length.
pub(crate) fn content_hash<T: Serialize>(value: &T) -> String {
    let canonical = serde_json::to_string(value).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}-{}", canonical.len())
}

pub(crate) fn parse_status(s: &str) -> Result<TurnStatus, crate::StoreError> {
    Ok(match s {
        "completed" => TurnStatus::Completed,
        "cancelled" => TurnStatus::Cancelled,
        "failed" => TurnStatus::Failed,
        "streaming" => TurnStatus::Streaming,
        other => return Err(crate::StoreError::Corrupt(format!("unknown status {other:?}"))),
    })
}
