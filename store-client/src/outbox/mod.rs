//! The durable outbox between a turn's end and the store.
//!
//! A turn that ends is first written to an outbox that survives a crash, then stored by the
//! [`Persister`](crate::Persister), which retries with backoff while the store is down. Writes to
//! the store are idempotent on `turn_id`, so an entry tried twice (a crash after the store said
//! yes, two nodes claiming at once) is still one row.
//!
//! [`Outbox`] is the draining side, which every backend offers; how an entry gets in is the
//! backend's own business ([`EmbeddedOutbox::enqueue`] takes the whole turn; the gateway's Redis
//! outbox records a pointer to turn state already in Redis).

mod embedded;

pub use embedded::EmbeddedOutbox;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::{Final, StoreError};

/// One finalised turn (or terminal task) waiting to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub item: Final,
    /// Failed attempts so far (the backoff grows with it).
    pub attempts: u32,
    /// When it entered the outbox (Unix ms).
    pub enqueued_ms: i64,
}

/// How much is waiting, for metrics and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Entries waiting to be stored.
    pub depth: u64,
    /// When the oldest waiting entry was enqueued (Unix ms).
    pub oldest_enqueued_ms: Option<i64>,
    /// Entries the store refused for good (kept for an operator, never retried).
    pub set_aside: u64,
}

/// An entry set aside, for an operator to look at.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SetAside {
    pub turn_id: String,
    /// The turn's user (empty when the entry cannot be read).
    pub user_id: String,
    /// Why the store refused it.
    pub error: String,
}

/// Which set-aside entries go back in line.
#[derive(Debug, Clone, PartialEq)]
pub enum AsideFilter {
    All,
    Ids(Vec<String>),
    /// Those set aside for a passing condition (see [`crate::is_transient_reason`]).
    Transient,
}

impl AsideFilter {
    pub fn takes(&self, entry: &SetAside) -> bool {
        match self {
            AsideFilter::All => true,
            AsideFilter::Ids(ids) => ids.contains(&entry.turn_id),
            AsideFilter::Transient => crate::is_transient_reason(&entry.error),
        }
    }
}

/// The draining side of an outbox.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Takes up to `max` entries that are due, oldest due first. Where several drainers share
    /// the outbox (nodes on one Redis), each is leased for `lease`: until then no other claim
    /// returns it.
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<Pending>, StoreError>;

    /// The entry is stored: remove it.
    async fn complete(&self, turn_id: &str) -> Result<(), StoreError>;

    /// The attempt failed: try again after `delay`, with `attempts` failures so far.
    async fn reschedule(
        &self,
        turn_id: &str,
        attempts: u32,
        delay: Duration,
        error: &str,
    ) -> Result<(), StoreError>;

    /// The store refused the entry for good: keep it aside, never retried, counted.
    async fn set_aside(&self, turn_id: &str, error: &str) -> Result<(), StoreError>;

    /// Depth, age of the oldest entry, entries set aside.
    async fn stats(&self) -> Result<OutboxStats, StoreError>;

    /// Gives back what this drainer holds (claims, backoffs of its own attempts) so that the
    /// next drainer (a surviving node, or this one restarted) takes them at once: called at the
    /// end of a drain. Nothing to give back where one process owns the outbox.
    async fn release(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Entries set aside (at most `max`).
    async fn set_aside_entries(&self, max: usize) -> Result<Vec<SetAside>, StoreError>;

    /// Puts the set-aside entries `filter` takes back in line, due now and with no failed
    /// attempts; returns how many.
    async fn retry_set_aside(&self, filter: &AsideFilter) -> Result<u64, StoreError>;
}

/// Wall-clock Unix milliseconds: outbox times outlive the process, so no `Instant`.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
