//! The backplane: each user's event log, the small state records appends are conditioned on,
//! and how events reach this node's endpoints. It is the log of ARCHITECTURE.md: ordering,
//! atomicity, fan-out and retention, and no domain rule.
//!
//! - [`MemoryBackplane`]: all of it in this process (embedded mode, one node);
//! - [`RedisBackplane`]: all of it in Redis, shared by every node (Redis mode), one generic
//!   append script.
//!
//! A change of shared state is an [`Append`]: events appended *if* a precondition on a record
//! holds, the record changed in the same step (in memory under the user's lock, in Redis one
//! script). That is what keeps delta indexes rising with `seq`, a snapshot's `next_index`
//! matching its `as_of_seq`, and a cancelled turn refusing the producer's next event on every
//! node alike. Turns and notifications are built on it in [`crate::domain`]; the domain's
//! contract suite (`domain::contract`) runs on every backplane.

mod memory;
pub mod record;
pub mod redis;

pub use memory::MemoryBackplane;
pub use record::{Append, Blobs, Event, Expect, Keep, Outcome, Read, Record};
pub use redis::RedisBackplane;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

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

#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// `"embedded"` or `"redis"` (for `/readyz`).
    fn mode(&self) -> &'static str;

    /// Appends `append.events` to the user's log if its precondition holds, changing its record
    /// in the same atomic step (see [`record`]).
    async fn append_if(&self, append: Append) -> Result<Outcome, Unavailable>;

    /// A record of `user` with the blobs asked for, and the log head as of that read.
    async fn read(
        &self,
        user: &str,
        record: &str,
        blobs: Blobs,
    ) -> Result<Option<Read>, Unavailable>;

    /// Sets a node-wide key to `value` unless it is set; returns the value it had (`None`: set
    /// now). Where a turn id's owner is found from the id alone.
    async fn claim(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, Unavailable>;

    /// A key [`claim`](Self::claim) set, if it still lives.
    async fn lookup(&self, key: &str) -> Result<Option<String>, Unavailable>;

    /// Notes `member` in a named timer set, due at `at_ms` (moved when already there).
    async fn watch(&self, set: &str, member: &str, at_ms: i64) -> Result<(), Unavailable>;

    /// Up to `max` members of `set` due at or before `at_ms`, soonest first.
    async fn due(&self, set: &str, at_ms: i64, max: usize) -> Result<Vec<String>, Unavailable>;

    async fn unwatch(&self, set: &str, member: &str) -> Result<(), Unavailable>;

    /// Sets how long a record and its blobs live (after an outbox stored what it held).
    async fn keep(&self, user: &str, record: &str, keep: Keep) -> Result<(), Unavailable>;

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

/// The current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    store_client::outbox::now_ms()
}

/// An event body's JSON. Serialising our own types cannot fail (no map has non-string keys);
/// if it ever did, the failure is logged and an empty object stands in, never broken JSON.
pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise a value");
        "{}".to_owned()
    })
}
