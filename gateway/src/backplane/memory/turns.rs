//! Turns in progress and recently ended, in this process: the state behind `turn.sync`,
//! `turn.cancel`, the 409s and idempotent creation.
//!
//! Each turn has its own async lock. Every change to a turn and the log event announcing it
//! happen under it, so delta indexes rise with seq; an `end` holds it while the finalised turn
//! is written to the outbox, so no event can follow a `turn.end`.

use std::sync::Arc;

use serde_json::Value;
use store_client::{Trace, TurnRecord};
use tokio::time::Instant;
use wire::TurnStatus;
use wire::api::TurnState;

use crate::backplane::{Snapshot, chars, grow_text};

/// One turn.
#[derive(Debug)]
pub struct Turn {
    pub turn_id: String,
    pub user_id: Arc<str>,
    pub conversation_id: String,
    pub status: TurnStatus,
    /// The text so far, up to the stored-text limit.
    pub text: String,
    /// The text stopped growing at the limit.
    pub truncated: bool,
    /// Unicode scalar values of every delta (the limit does not stop the count).
    pub text_chars: u64,
    pub next_index: u64,
    /// Seq of its `turn.start`, returned again on an idempotent create.
    pub start_seq: u64,
    /// RFC 3339, as in `turn.start`.
    pub created_at: String,
    pub created_at_ms: i64,
    pub meta: Option<Value>,
    /// Kept for the finalised turn (stored apart from it).
    pub traces: Vec<Trace>,
    /// When it ended; ended turns are forgotten a retention period later.
    pub ended_at: Option<Instant>,
    /// When it was created or last took an event (turns idle too long are ended).
    pub last_event: Instant,
    /// `next_index` at the last checkpoint of its text (see `recover`).
    pub checkpointed: u64,
}

impl Turn {
    pub fn new(
        turn_id: String,
        user_id: &str,
        conversation_id: String,
        meta: Option<Value>,
    ) -> Self {
        let created_at_ms = super::super::now_ms();
        Turn {
            turn_id,
            user_id: Arc::from(user_id),
            conversation_id,
            status: TurnStatus::Streaming,
            text: String::new(),
            truncated: false,
            text_chars: 0,
            next_index: 0,
            start_seq: 0,
            created_at: crate::ids::rfc3339_ms(created_at_ms),
            created_at_ms,
            meta,
            traces: Vec::new(),
            ended_at: None,
            last_event: Instant::now(),
            checkpointed: 0,
        }
    }

    /// Takes a delta; returns its index.
    pub fn delta(&mut self, piece: &str, max_text: usize) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        self.text_chars += chars(piece);
        grow_text(&mut self.text, &mut self.truncated, piece, max_text);
        index
    }

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

    pub fn snapshot(&self, as_of_seq: u64) -> Snapshot {
        Snapshot {
            turn_id: self.turn_id.clone(),
            conversation_id: self.conversation_id.clone(),
            status: self.status,
            text: self.text.clone(),
            next_index: self.next_index,
            as_of_seq,
        }
    }

    /// The finalised record of this turn if it ends now with `status`.
    pub fn final_record(&self, status: TurnStatus) -> TurnRecord {
        TurnRecord {
            turn_id: self.turn_id.clone(),
            conversation_id: self.conversation_id.clone(),
            user_id: self.user_id.to_string(),
            status,
            text: self.text.clone(),
            truncated: self.truncated,
            created_at_ms: self.created_at_ms,
            completed_at_ms: super::super::now_ms(),
            meta: self.meta.clone().unwrap_or(Value::Null),
        }
    }
}
