//! The outbox in Redis mode. A turn's state (text, traces, times) is already in Redis, in its
//! user's slot; the outbox (a slot of its own) holds only which turns wait, so it can be written
//! *before* the end: a crash of the node between the end and anything after it still leaves
//! the turn on its way to the store, and any node may store it. Claims lease entries, so two
//! nodes do not store one turn at once (and if they did, the store's idempotent write would
//! keep one row).
//!
//! An ended turn's keys do not expire until it is stored; then they live the turn retention
//! (its idempotency window) and go.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use store_client::outbox::now_ms;
use store_client::{AsideFilter, Final, Outbox, OutboxStats, Pending, SetAside, StoreError};

use super::conn::RedisConn;
use super::keys::Keys;
use super::scripts::Scripts;
use crate::backplane::Unavailable;

/// What a turn's state says when its outbox entry comes up.
pub enum Assembled {
    Ended(Box<Final>),
    Streaming,
    Gone,
}

/// Reads finished turns (and terminal tasks: keys `task/<id>`) out of their state, and lets it
/// go once stored: the domain's, which knows what a record holds (this outbox only knows which
/// keys wait).
#[async_trait]
pub trait Finished: Send + Sync {
    async fn assemble(&self, user: &str, turn_id: &str) -> Result<Assembled, Unavailable>;
    /// Stored: its state now lives only its retention period.
    async fn stored(&self, user: &str, turn_id: &str) -> Result<(), Unavailable>;
}

/// How long an entry whose turn still streams is kept: the end it announced never came (the
/// node died between the two steps, or the end was refused), so it is dropped after this.
const NO_END_AFTER: Duration = Duration::from_secs(60);
/// When to look again at an entry whose turn still streams.
const NOT_ENDED_YET: Duration = Duration::from_secs(1);

pub struct RedisOutbox {
    conn: RedisConn,
    keys: Keys,
    scripts: Arc<Scripts>,
    /// Set once at start (the domain is built on the backplane, after this outbox).
    finished: OnceLock<Arc<dyn Finished>>,
    /// turn → user, for the entries this node claimed.
    claimed: DashMap<String, String>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis (outbox): {e}"))
}

fn domain(e: Unavailable) -> StoreError {
    StoreError::Unavailable(e.message)
}

impl RedisOutbox {
    pub fn new(conn: RedisConn, keys: Keys, scripts: Arc<Scripts>) -> Self {
        RedisOutbox { conn, keys, scripts, finished: OnceLock::new(), claimed: DashMap::new() }
    }

    /// Where finished turns are read from; set once, before the persister runs.
    pub fn serve(&self, finished: Arc<dyn Finished>) {
        let _ = self.finished.set(finished);
    }

    fn finished(&self) -> Result<&Arc<dyn Finished>, StoreError> {
        self.finished.get().ok_or_else(|| StoreError::Unavailable("outbox not served yet".into()))
    }

    /// Records that `turn_id` of `user` is about to end (before the end itself).
    pub async fn add(&self, turn_id: &str, user: &str) -> redis::RedisResult<()> {
        let now = now_ms();
        let _: i64 = self
            .script(&self.scripts.outbox_add)
            .arg(turn_id)
            .arg(user)
            .arg(now)
            .arg(now)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// An outbox script with its keys (every one takes the same five, see `scripts.rs`).
    fn script<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let k = self.keys.outbox();
        let mut inv = script.key(k.due);
        inv.key(k.age).key(k.who).key(k.tries).key(k.aside);
        inv
    }

    async fn done(&self, turn_id: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .script(&self.scripts.outbox_done)
            .arg(turn_id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.claimed.remove(turn_id);
        Ok(())
    }

    async fn retry_at(&self, turn_id: &str, at_ms: i64, attempts: u32) -> Result<(), StoreError> {
        let _: i64 = self
            .script(&self.scripts.outbox_retry)
            .arg(turn_id)
            .arg(at_ms)
            .arg(attempts)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn assemble(&self, turn_id: &str, user: &str) -> Result<Assembled, StoreError> {
        self.finished()?.assemble(user, turn_id).await.map_err(domain)
    }
}

#[async_trait]
impl Outbox for RedisOutbox {
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<Pending>, StoreError> {
        let now = now_ms();
        let raw: Vec<String> = self
            .script(&self.scripts.outbox_claim)
            .arg(now)
            .arg(lease.as_millis() as u64)
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for entry in raw.chunks_exact(4) {
            let (turn_id, user) = (&entry[0], &entry[1]);
            let attempts = entry[2].parse().unwrap_or(0);
            let enqueued_ms = entry[3].parse::<f64>().unwrap_or(0.0) as i64;
            match self.assemble(turn_id, user).await? {
                Assembled::Ended(turn) => {
                    self.claimed.insert(turn_id.clone(), user.clone());
                    out.push(Pending { item: *turn, attempts, enqueued_ms });
                }
                Assembled::Streaming if now - enqueued_ms < NO_END_AFTER.as_millis() as i64 => {
                    self.retry_at(turn_id, now + NOT_ENDED_YET.as_millis() as i64, attempts)
                        .await?;
                }
                Assembled::Streaming => {
                    tracing::warn!(%turn_id, "an announced end never came; outbox entry dropped");
                    self.done(turn_id).await?;
                }
                Assembled::Gone => {
                    tracing::error!(%turn_id, %user, "turn state gone before it was stored (Redis lost data?)");
                    self.done(turn_id).await?;
                }
            }
        }
        Ok(out)
    }

    /// Stored: the turn's state now lives only its retention period, then the entry goes.
    async fn complete(&self, turn_id: &str) -> Result<(), StoreError> {
        let user = match self.claimed.get(turn_id).map(|u| u.clone()) {
            Some(u) => Some(u),
            None => redis::cmd("HGET")
                .arg(self.keys.outbox().who)
                .arg(turn_id)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?,
        };
        if let Some(user) = user {
            self.finished()?.stored(&user, turn_id).await.map_err(domain)?;
        }
        self.done(turn_id).await
    }

    async fn reschedule(
        &self,
        turn_id: &str,
        attempts: u32,
        delay: Duration,
        _error: &str,
    ) -> Result<(), StoreError> {
        self.retry_at(turn_id, now_ms() + delay.as_millis() as i64, attempts).await
    }

    async fn set_aside(&self, turn_id: &str, error: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .script(&self.scripts.outbox_aside)
            .arg(turn_id)
            .arg(error)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.claimed.remove(turn_id);
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let (depth, oldest, aside): (u64, String, u64) = self
            .script(&self.scripts.outbox_stats)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(OutboxStats {
            depth,
            oldest_enqueued_ms: oldest.parse::<f64>().ok().map(|v| v as i64),
            set_aside: aside,
        })
    }

    /// Every entry this node claimed or backs off is due now, for another node (or this one
    /// restarted) to take at once instead of after the lease or the backoff.
    async fn release(&self) -> Result<(), StoreError> {
        let ids: Vec<String> = self.claimed.iter().map(|e| e.key().clone()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.keys.outbox().due).arg("XX");
        for id in &ids {
            cmd.arg(now).arg(id);
        }
        let _: i64 = cmd.query_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        self.claimed.clear();
        tracing::info!(entries = ids.len(), "outbox entries handed back for the next node");
        Ok(())
    }

    async fn set_aside_entries(&self, max: usize) -> Result<Vec<SetAside>, StoreError> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.outbox().aside)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(all.into_iter().take(max).map(|(turn_id, v)| aside_entry(turn_id, &v)).collect())
    }

    async fn retry_set_aside(&self, filter: &AsideFilter) -> Result<u64, StoreError> {
        let mut n = 0;
        for entry in self.set_aside_entries(usize::MAX).await? {
            if filter.takes(&entry) {
                let back: i64 = self
                    .script(&self.scripts.outbox_unaside)
                    .arg(&entry.turn_id)
                    .arg(&entry.user_id)
                    .arg(now_ms())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(unavailable)?;
                n += back as u64;
            }
        }
        Ok(n)
    }
}

/// An entry of the set-aside hash: `{"user","error"}`, or `user|error` as written before.
fn aside_entry(turn_id: String, value: &str) -> SetAside {
    #[derive(serde::Deserialize)]
    struct Aside {
        user: String,
        error: String,
    }
    let (user_id, error) = match serde_json::from_str::<Aside>(value) {
        Ok(a) => (a.user, a.error),
        Err(_) => {
            let (u, e) = value.split_once('|').unwrap_or(("", value));
            (u.to_owned(), e.to_owned())
        }
    };
    SetAside { turn_id, user_id, error }
}
