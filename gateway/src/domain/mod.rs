//! The domain: every rule of turns and notifications, written once, in Rust, over the
//! [`Backplane`](crate::backplane::Backplane) log whatever its backend. A rule becomes an
//! [`Append`](crate::backplane::Append): events to append if a record is as expected, the record's
//! change beside them; the backend only stores, orders and fans out.
//!
//! - [`turn`]: a turn's record and the pure rules of its lifecycle (what items do to it);
//! - [`turns`]: the turn service (create, apply, cancel, snapshot, idle ends, crash recovery);
//! - [`sink`]: where finished turns go before their `turn.end` (the embedded or Redis outbox);
//! - [`notifications`]: dedup and read marks;
//! - [`task`], [`tasks`]: a task's record and rules, and the task service (create, apply,
//!   cancel, read, crash recovery; its `hub` module lists a user's tasks);
//! - [`contract`]: these rules checked on every backend.
//!
//! A new event family is a module here plus its wire types.

pub mod contract;
mod contract_log;
mod contract_tasks;
mod contract_turns;
mod digests;
pub mod finished;
pub mod inbox;
mod kept;
pub mod notifications;
pub mod prefs;
mod pushes;
mod recover;
pub mod sink;
pub mod task;
pub mod tasks;
pub mod turn;
pub mod turns;

pub use notifications::Notifications;
pub use sink::TurnSink;
pub use tasks::{Tasks, TasksConfig};
pub use turns::{Turns, TurnsConfig};

use wire::TurnStatus;

use crate::backplane::Unavailable;

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
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// A request to start a turn, validated.
#[derive(Debug, Clone)]
pub struct NewTurn {
    pub user_id: String,
    pub conversation_id: String,
    pub turn_id: String,
    pub meta: Option<serde_json::Value>,
    /// The producer's `traceparent`, kept on the turn (tracing on).
    pub trace: Option<String>,
}

/// Why a task operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Unknown, or another user's: the two look the same.
    #[error("no task {0:?}")]
    NotFound(String),
    #[error("task {0:?} already exists for another user or context")]
    Exists(String),
    #[error("task {0:?} has reached a terminal state")]
    Ended(String),
    #[error("task {0:?} has reached a terminal state and cannot be canceled")]
    NotCancelable(String),
    #[error("a task's artifacts may hold at most {0} bytes (GATEWAY_TASK_MAX_ARTIFACT_BYTES)")]
    TooLarge(u64),
    #[error("the user has {0} tasks not yet stored (GATEWAY_MAX_OPEN_TASKS)")]
    TooMany(usize),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// What became of a batch of producer items: the first `accepted` were published (the last at
/// `last_seq`); `refused`, when set, is why item number `accepted` was not, and nothing after it
/// was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<E = TurnError> {
    pub accepted: u64,
    pub last_seq: Option<u64>,
    pub refused: Option<E>,
}

impl<E> Default for Applied<E> {
    fn default() -> Self {
        Applied { accepted: 0, last_seq: None, refused: None }
    }
}

/// A turn's text so far, as of a position in its user's log (`turn.sync`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub turn_id: String,
    pub conversation_id: String,
    pub status: TurnStatus,
    pub text: String,
    pub next_index: u64,
    pub as_of_seq: u64,
}

/// Unicode scalar values in `text` (what `text_len` counts).
pub fn chars(text: &str) -> u64 {
    text.chars().count() as u64
}
