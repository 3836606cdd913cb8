//! Multi-endpoint presence: every live connection (endpoint) of a user, on every node.
//!
//! The gateway registers an endpoint when it connects and unregisters it when it closes. An
//! entry expires `ttl` after its last refresh, so the endpoints of a node that died (kill -9,
//! lost network) leave the list without anyone removing them; a live node refreshes all of its
//! endpoints in one batched call per beat. Reads prune what has expired.
//!
//! - [`PresenceRegistry`]: the trait every backend implements;
//! - [`MemoryPresence`]: one process (embedded mode);
//! - [`RedisPresence`]: many nodes sharing one Redis (or Redis Cluster: keys are slot-tagged);
//! - [`contract`]: the behaviour every backend must show, run against each in tests.

pub mod contract;
mod error;
mod memory;
mod redis;

pub use error::PresenceError;
pub use memory::MemoryPresence;
pub use redis::{RedisPresence, slot_tag, user_of_tag};
pub use wire::EndpointInfo;

use std::sync::Arc;

use async_trait::async_trait;

/// Names one endpoint of one user, for batched refreshes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub user_id: String,
    pub conn_id: String,
}

/// Where the endpoints of every user are, across nodes.
#[async_trait]
pub trait PresenceRegistry: Send + Sync + 'static {
    /// Records `endpoint` of `user_id`; it is listed until unregistered or until the registry's
    /// TTL passes without a refresh. Shared, not copied: the in-memory backend keeps the same
    /// record the connection holds (this exists once per endpoint).
    async fn register(
        &self,
        user_id: &str,
        endpoint: Arc<EndpointInfo>,
    ) -> Result<(), PresenceError>;

    /// Removes one endpoint at once (a clean close). Unknown endpoints are not an error.
    async fn unregister(&self, user_id: &str, conn_id: &str) -> Result<(), PresenceError>;

    /// Extends the life of many endpoints in one call (a node's heartbeat). Entries that expired
    /// or were lost meanwhile (the node was cut off past the TTL, Redis restarted) are not
    /// brought back: they are returned, and the caller re-registers those still connected.
    async fn refresh(&self, endpoints: &[EndpointKey]) -> Result<Vec<EndpointKey>, PresenceError>;

    /// The user's live endpoints on every node, oldest first; expired entries are pruned.
    async fn list(&self, user_id: &str) -> Result<Vec<EndpointInfo>, PresenceError>;

    /// How long an entry lives without a refresh.
    fn ttl(&self) -> std::time::Duration;
}
