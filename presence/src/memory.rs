//! In-process presence for embedded mode (one node). Uses tokio's clock so tests can pause time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::{EndpointInfo, EndpointKey, PresenceError, PresenceRegistry};

/// Presence held in this process.
#[derive(Debug)]
pub struct MemoryPresence {
    ttl: Duration,
    /// user → conn_id → (endpoint, registration order, expiry).
    users: DashMap<String, HashMap<String, Entry>>,
    /// Orders endpoints by registration, since `connected_at` has only millisecond precision.
    counter: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Entry {
    info: Arc<EndpointInfo>,
    order: u64,
    expires: Instant,
}

impl MemoryPresence {
    pub fn new(ttl: Duration) -> Self {
        MemoryPresence { ttl, users: DashMap::new(), counter: Default::default() }
    }
}

#[async_trait]
impl PresenceRegistry for MemoryPresence {
    async fn register(
        &self,
        user_id: &str,
        endpoint: Arc<EndpointInfo>,
    ) -> Result<(), PresenceError> {
        let order = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let conn_id = endpoint.conn_id.clone();
        let entry = Entry { info: endpoint, order, expires: Instant::now() + self.ttl };
        self.users.entry(user_id.to_owned()).or_default().insert(conn_id, entry);
        Ok(())
    }

    async fn unregister(&self, user_id: &str, conn_id: &str) -> Result<(), PresenceError> {
        self.users.remove_if_mut(user_id, |_, eps| {
            eps.remove(conn_id);
            eps.is_empty()
        });
        Ok(())
    }

    async fn refresh(&self, endpoints: &[EndpointKey]) -> Result<Vec<EndpointKey>, PresenceError> {
        let now = Instant::now();
        let expires = now + self.ttl;
        let mut missing = Vec::new();
        for key in endpoints {
            if let Some(mut eps) = self.users.get_mut(&key.user_id)
                && let Some(e) = eps.get_mut(&key.conn_id)
                && e.expires > now
            {
                e.expires = expires;
            } else {
                missing.push(key.clone());
            }
        }
        Ok(missing)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<EndpointInfo>, PresenceError> {
        let now = Instant::now();
        let mut live = Vec::new();
        self.users.remove_if_mut(user_id, |_, eps| {
            eps.retain(|_, e| e.expires > now);
            let mut sorted: Vec<&Entry> = eps.values().collect();
            sorted.sort_by_key(|e| e.order);
            live = sorted.into_iter().map(|e| EndpointInfo::clone(&e.info)).collect();
            eps.is_empty()
        });
        Ok(live)
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract;

    #[tokio::test]
    async fn passes_the_contract() {
        let ttl = Duration::from_millis(300);
        contract::run_all(&|| Box::new(MemoryPresence::new(ttl)) as Box<dyn PresenceRegistry>)
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_tokio_time() {
        let p = MemoryPresence::new(Duration::from_secs(30));
        p.register("u", contract::endpoint("c1", "n1")).await.unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(p.list("u").await.unwrap().len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(p.list("u").await.unwrap().is_empty());
        assert!(p.users.is_empty(), "a user with no endpoints leaves no entry behind");
    }
}
