//! The conversation store: where a finalised turn is persisted exactly once and where the
//! assistant loads history from.
//!
//! - [`TurnStore`]: the trait the gateway uses; writes are idempotent on `turn_id` (a repeat is
//!   a no-op; the same id with other content is a [`StoreError::Conflict`], never an overwrite);
//! - [`EmbeddedStore`]: SQLite in a file (the default: no server), WAL and full sync;
//! - [`PostgresStore`]: pooled, migrated on start-up by versioned migrations, plain SQL that
//!   Postgres-wire databases (CockroachDB, YugabyteDB, Citus) also run;
//! - [`contract`]: the behaviour both must show, run against each in tests;
//! - [`Outbox`], [`EmbeddedOutbox`] and [`Persister`]: the durable path from a turn's (or a
//!   task's) end to the store, retried with backoff while the store is down;
//! - [`tasks`]: terminal tasks, stored once, listed by the task hub.
//!
//! History pages are keyset-paged (newest first, by `(created_at, turn_id)`, index-backed, no
//! OFFSET), so a cursor is stable while turns are inserted. Traces live apart and are never
//! loaded with history.

pub mod contract;
mod cursor;
mod embedded;
mod embedded_batch;
mod error;
pub mod inbox;
pub mod outbox;
mod persister;
mod postgres;
pub mod push;
mod sql;
pub mod task_contract;
pub mod tasks;
mod types;

pub use cursor::Cursor;
pub use embedded::EmbeddedStore;
pub use error::{StoreError, is_transient_reason};
pub use inbox::{Inbox, InboxRecord, InboxStatus, Mark, Marked};
pub use outbox::{AsideFilter, EmbeddedOutbox, Outbox, OutboxStats, Pending, SetAside};
pub use persister::{PersistCounters, Persister, RetryPolicy};
pub use postgres::PostgresStore;
pub use push::{PushEntry, PushQueue, PushResult};
pub use tasks::{FinalTask, TaskCursor, Tasks};
pub use types::{
    Final, FinalTurn, KeptNote, Page, PutOutcome, Trace, TurnRecord, note_key, task_key,
};

use async_trait::async_trait;

/// Where finalised turns are kept.
#[async_trait]
pub trait TurnStore: Inbox + PushQueue + Tasks + Send + Sync + 'static {
    /// Stores a turn and its traces in one transaction, unless a turn with this id is stored
    /// already: then nothing changes, and the answer says whether the content was the same.
    async fn put(&self, turn: &FinalTurn) -> Result<PutOutcome, StoreError>;

    /// A page of a conversation's turns, newest first, strictly older than `before`.
    /// With `owner`, only that user's turns (a user reads only their own conversations).
    async fn page(
        &self,
        conversation_id: &str,
        owner: Option<&str>,
        limit: u32,
        before: Option<&Cursor>,
    ) -> Result<Page, StoreError>;

    /// A turn's traces in their order, with the turn's user (to check who may read them);
    /// `None` when no such turn is stored.
    async fn traces(&self, turn_id: &str) -> Result<Option<(String, Vec<Trace>)>, StoreError>;

    /// Removes a conversation's turns of `owner` (`None`: everyone's) with their traces;
    /// returns how many turns went. A turn of theirs in it created at or before `at_ms` that
    /// arrives later (from an outbox) is discarded; other users' turns are untouched.
    async fn delete_conversation(
        &self,
        conversation_id: &str,
        owner: Option<&str>,
        at_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Removes turns completed before `cutoff_ms` (Unix ms) with their traces, and ended
    /// tasks last changed before it with their artifacts (retention); returns the turns.
    async fn purge_before(&self, cutoff_ms: i64) -> Result<u64, StoreError>;

    /// Whether the store answers now (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// A user's notification preferences document (JSON), if they set one.
    async fn preferences(&self, user_id: &str) -> Result<Option<String>, StoreError>;

    /// Replaces a user's notification preferences document.
    async fn put_preferences(&self, user_id: &str, doc: &str) -> Result<(), StoreError>;
}
