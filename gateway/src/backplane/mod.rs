//! The backplane: where each user's event log, the state of every turn and the notification
//! dedup keys live, and how events reach this node's endpoints.
//!
//! - [`MemoryBackplane`]: all of it in this process (embedded mode, one node);
//! - [`RedisBackplane`]: all of it in Redis, shared by every node (Redis mode).
//!
//! It is one trait, not a log trait beside a turn trait, because a turn's change and the event
//! announcing it must be one atomic step: in memory under the turn's lock, in Redis one script.
//! That is what keeps delta indexes rising with `seq`, a snapshot's `next_index` matching its
//! `as_of_seq`, and a cancelled turn refusing the producer's next event on every node alike.
//! [`contract`] is the behaviour every backplane must show.

pub mod contract;
mod memory;
pub mod redis;

pub use memory::{MemoryBackplane, MemoryLimits};
pub use redis::RedisBackplane;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use wire::TurnStatus;
use wire::api::{CreateNotification, EventItem, NotificationAccepted, TurnCreated, TurnState};

use crate::hub::{Attachment, Entry, Reservation, ResumeFrom};

/// The backplane cannot be reached now (Redis down, the outbox's disk failing): the caller
/// answers 503 and nothing was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unavailable {
    /// snake_case, for the error body (`redis_unavailable`, `outbox_unavailable`).
    pub code: &'static str,
    pub message: String,
}

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
    pub meta: Option<Value>,
}

/// What became of a batch of producer items: the first `accepted` were published (the last at
/// `last_seq`); `refused`, when set, is why item number `accepted` was not, and nothing after it
/// was tried.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    pub accepted: u64,
    pub last_seq: Option<u64>,
    pub refused: Option<TurnError>,
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

#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// `"embedded"` or `"redis"` (for `/readyz`).
    fn mode(&self) -> &'static str;

    /// Starts a turn and publishes its `turn.start`; the same turn again (same user and
    /// conversation) is answered with the first (`false`), another user's is a `Conflict`.
    async fn create_turn(&self, req: NewTurn) -> Result<(TurnCreated, bool), TurnError>;

    /// Applies producer items in order, each changing the turn and publishing its event in one
    /// step; stops at the first refused. An `end` makes the finalised turn durable in the outbox
    /// before its `turn.end` is published.
    async fn apply(&self, turn_id: &str, items: Vec<EventItem>) -> Applied;

    /// `turn.cancel` from a device of the turn's user: ends it as `cancelled`.
    async fn cancel(&self, user: &str, turn_id: &str) -> Result<u64, TurnError>;

    /// `turn.sync`: the user's own turn's text so far.
    async fn snapshot(&self, user: &str, turn_id: &str) -> Result<Snapshot, TurnError>;

    /// `GET /v1/turns/{id}`.
    async fn turn(&self, turn_id: &str) -> Result<TurnState, TurnError>;

    /// Publishes a notification unless its dedup key was seen within the window; returns the
    /// answer and whether it was published now.
    async fn notify(
        &self,
        req: CreateNotification,
    ) -> Result<(NotificationAccepted, bool), Unavailable>;

    /// Publishes `notification.read` to every endpoint of the user.
    async fn mark_read(&self, user: &str, id: &str) -> Result<u64, Unavailable>;

    /// Attaches an admitted endpoint: what it missed since `resume` (all of it, or nothing and
    /// `resumed: false`), then live events. Replay and live events meet with nothing missing;
    /// whatever arrives twice has a seq the endpoint already has and is skipped by it.
    async fn attach(
        &self,
        reservation: Reservation,
        resume: Option<&ResumeFrom>,
    ) -> Result<Attachment, Unavailable>;

    /// Detaches an endpoint (its connection closed).
    fn detach(&self, user: &str, endpoint: u64);

    /// The events of `user`'s log with `after < seq <= upto` in `epoch`, if the log still holds
    /// all of them: how an endpoint fills a gap (Redis mode, after a lost subscription).
    async fn missed(
        &self,
        user: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<Option<Vec<Arc<Entry>>>, Unavailable>;

    /// Whether this node can serve (Redis reachable, subscriptions live).
    async fn ready(&self) -> Result<(), Unavailable>;

    /// Periodic housekeeping (expired logs, turns and dedup keys; keeping the logs of
    /// connected users alive).
    async fn sweep(&self);

    /// The backplane's own background work until `stop` (Redis: restoring lost subscriptions
    /// and catching endpoints up).
    async fn run(&self, stop: CancellationToken) {
        stop.cancelled().await;
    }
}

/// Unicode scalar values in `text` (what `text_len` counts).
pub fn chars(text: &str) -> u64 {
    text.chars().count() as u64
}

/// The current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    store_client::outbox::now_ms()
}

/// The final record of a turn, its text cut to `max_text` bytes (flagged) when longer.
pub fn final_turn(
    turn: store_client::TurnRecord,
    traces: Vec<store_client::Trace>,
    max_text: usize,
) -> store_client::FinalTurn {
    let mut turn = store_client::FinalTurn { turn, traces };
    turn.limit_text(max_text);
    turn
}

/// The `notification` event a producer's request makes, under a fresh id.
pub fn notification(id: &str, req: CreateNotification) -> wire::EventBody {
    wire::EventBody::Notification {
        id: id.to_owned(),
        category: req.category,
        priority: req.priority.unwrap_or_default(),
        title: req.title,
        body: req.body,
        data: req.data.unwrap_or(Value::Null),
        created_at: crate::ids::now_rfc3339(),
    }
}

/// How a turn's text grows while streaming: up to `max` bytes, then it stops growing and is
/// flagged (what the store keeps of it); the deltas still reach the devices.
pub fn grow_text(text: &mut String, truncated: &mut bool, piece: &str, max: usize) {
    if *truncated {
        return;
    }
    if text.len() + piece.len() <= max {
        text.push_str(piece);
        return;
    }
    let mut cut = max - text.len();
    while !piece.is_char_boundary(cut) {
        cut -= 1;
    }
    text.push_str(&piece[..cut]);
    *truncated = true;
}
