//! The fan-out hub: each user's log and the live endpoints that receive it.
//!
//! Appending to a user's log and handing the event to every endpoint of that user happen under
//! one per-user lock, and so does attaching a new endpoint (snapshot of what it missed, then
//! registration for live events). That is what makes "every endpoint gets every event, in seq
//! order, none missing, none twice" hold even for an endpoint that connects mid-stream.
//!
//! Publishing never waits for a client: each endpoint has a short queue of shared entries; an
//! endpoint whose queue is full is marked behind and its task reads the rest from the log at its
//! client's pace (PROTOCOL.md v1.1, §Backpressure). Only an endpoint whose next event has left
//! the log is closed (4008), by its own task.

mod admit;
mod endpoint;
mod entry;
mod log;

pub use admit::{ResumeFrom, TooManyEndpoints};
pub use endpoint::{Attachment, Direct, Offer, Outbox, Ready, Reservation};
pub use entry::{Entry, kind_of};
pub use log::Retention;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::time::Instant;
use wire::EventBody;

use crate::metrics::Metrics;
use log::Ring;

/// Events of one user closer together than this are a burst: written by the endpoints' tasks
/// in batches rather than one by one from the publisher. At a paced stream a user's events are
/// ~20 ms apart; at saturation, microseconds.
const BURST_GAP: std::time::Duration = std::time::Duration::from_micros(500);

/// Per-user logs and endpoints of this process.
pub struct Hub {
    users: DashMap<Arc<str>, Arc<Mutex<UserLog>>>,
    retention: Retention,
    max_endpoints: usize,
    queue_depth: usize,
    /// Random per process: epochs of different process lives never collide.
    epoch_prefix: String,
    /// Distinguishes successive lives of one user's log within this process.
    lives: AtomicU64,
    /// Numbers endpoints so they can be found again on detach.
    next_endpoint: AtomicU64,
    /// Bytes every retained log entry of this process costs, against `retention.node_bytes`.
    log_bytes: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// One user's log and live endpoints.
struct UserLog {
    user: Arc<str>,
    /// The life of this log; resume points from another life are refused.
    epoch: Arc<str>,
    ring: Ring,
    endpoints: Vec<(u64, Arc<Outbox>)>,
    /// Endpoints admitted (counted against the limit) but not yet attached.
    reserved: usize,
    /// Set when the janitor dropped this log from the map: callers holding it look again.
    retired: bool,
}

impl Hub {
    pub fn new(
        retention: Retention,
        max_endpoints: usize,
        queue_depth: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Hub {
            users: DashMap::new(),
            retention,
            max_endpoints,
            queue_depth,
            epoch_prefix: format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
            lives: AtomicU64::new(0),
            next_endpoint: AtomicU64::new(1),
            log_bytes: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Runs `f` on the user's live log, creating it when absent. Retries when the janitor
    /// retired the log between the lookup and the lock, so nothing lands in a dropped log.
    fn with_log<R>(&self, user: &str, mut f: impl FnMut(&mut UserLog) -> R) -> R {
        loop {
            let slot = match self.users.get(user) {
                Some(s) => s.clone(),
                None => self
                    .users
                    .entry(Arc::from(user))
                    .or_insert_with(|| Arc::new(Mutex::new(self.new_log(user))))
                    .clone(),
            };
            let mut log = slot.lock();
            if !log.retired {
                return f(&mut log);
            }
        }
    }

    fn new_log(&self, user: &str) -> UserLog {
        let life = self.lives.fetch_add(1, Ordering::Relaxed);
        UserLog {
            user: Arc::from(user),
            epoch: Arc::from(format!("{}-{life:x}", self.epoch_prefix)),
            ring: Ring::new(),
            endpoints: Vec::new(),
            reserved: 0,
            retired: false,
        }
    }

    /// Appends `body` to the user's log and hands it to every endpoint of the user.
    pub fn publish(&self, user: &str, body: &EventBody) -> Arc<Entry> {
        self.append(user, body.kind(), &crate::backplane::to_json(body))
    }

    /// Appends an event (its JSON without `seq`, serialised before the lock is taken; the seq
    /// is spliced in under it) and hands it to every endpoint of the user.
    pub fn append(&self, user: &str, kind: &'static str, body_json: &str) -> Arc<Entry> {
        let entry = self.with_log(user, |log| {
            let prev = log.ring.newest_at();
            let entry = self.push(log, kind, body_json);
            self.fan_out(log, std::slice::from_ref(&entry), prev);
            entry
        });
        self.metrics.events_published.increment(1);
        entry
    }

    /// Appends several events at once and hands them to every endpoint together (a caught-up
    /// WebSocket gets them in one write); returns the first and last seq, (0, 0) for none.
    pub fn append_all<'a>(
        &self,
        user: &str,
        events: impl Iterator<Item = (&'static str, &'a str)> + Clone,
    ) -> (u64, u64) {
        let entries: Vec<Arc<Entry>> = self.with_log(user, |log| {
            let prev = log.ring.newest_at();
            let entries: Vec<_> =
                events.clone().map(|(kind, json)| self.push(log, kind, json)).collect();
            self.fan_out(log, &entries, prev);
            entries
        });
        self.metrics.events_published.increment(entries.len() as u64);
        let seq = |e: Option<&Arc<Entry>>| e.map_or(0, |e| e.seq);
        (seq(entries.first()), seq(entries.last()))
    }

    /// Makes the next entry of the locked log and keeps it in the ring.
    fn push(&self, log: &mut UserLog, kind: &'static str, body_json: &str) -> Arc<Entry> {
        let entry = Arc::new(Entry::new(log.epoch.clone(), log.ring.next_seq(), kind, body_json));
        let (added, freed) = log.ring.push(entry.clone(), self.retention);
        self.account(log, added, freed);
        entry
    }

    /// Counts bytes a log took and gave back. Past the node's budget, the log that grew gives
    /// back its oldest entries until the node is within it again: the heaviest appenders lose
    /// resume depth first, and every other log keeps what it has.
    fn account(&self, log: &mut UserLog, added: usize, freed: usize) {
        let total = if added >= freed {
            self.log_bytes.fetch_add(added - freed, Ordering::Relaxed) + (added - freed)
        } else {
            self.log_bytes.fetch_sub(freed - added, Ordering::Relaxed) - (freed - added)
        };
        let budget = self.retention.node_bytes;
        if total > budget {
            let keep = log.ring.bytes().saturating_sub(total - budget);
            let over = log.ring.trim_bytes(keep);
            self.log_bytes.fetch_sub(over, Ordering::Relaxed);
        }
    }

    /// Bytes the retained logs of this process hold (`gateway_log_bytes`).
    pub fn log_bytes(&self) -> usize {
        self.log_bytes.load(Ordering::Relaxed)
    }

    /// Hands events appended elsewhere (Redis mode; consecutive, one append's) to this node's
    /// endpoints of `user`, if it has any, and keeps them in the node-local cache of the user's
    /// log, where an endpoint that fell behind reads them without asking Redis. `make` builds
    /// the entries from the log's epoch, reusing the one already held when it is the same (most
    /// events), so the epoch string is not copied per event.
    pub fn deliver(&self, user: &str, epoch: &str, make: impl FnOnce(&Arc<str>) -> Vec<Entry>) {
        let Some(slot) = self.users.get(user).map(|s| s.clone()) else { return };
        let mut log = slot.lock();
        if log.retired {
            return;
        }
        if *log.epoch != *epoch {
            log.epoch = Arc::from(epoch);
            let freed = log.ring.trim_bytes(0);
            self.log_bytes.fetch_sub(freed, Ordering::Relaxed);
            log.ring = Ring::new(); // a new life starts its seqs again
        }
        let entries: Vec<Arc<Entry>> = make(&log.epoch).into_iter().map(Arc::new).collect();
        let prev = log.ring.newest_at();
        for entry in &entries {
            let (added, freed) = log.ring.cache(entry.clone(), self.retention);
            self.account(&mut log, added, freed);
        }
        if !entries.is_empty() {
            self.fan_out(&mut log, &entries, prev);
        }
    }

    /// Hands `entries` (consecutive, just appended) to every endpoint of the locked log;
    /// endpoints asked to close leave. `prev`: when the event before them was appended.
    ///
    /// A caught-up WebSocket gets them written by this very call (the direct path), unless the
    /// user's events are coming in a burst (the previous one less than [`BURST_GAP`] ago): then
    /// they are queued, and the endpoint's task writes the burst in a few large writes instead
    /// of one small write per event from here.
    fn fan_out(&self, log: &mut UserLog, entries: &[Arc<Entry>], prev: Option<Instant>) {
        let depth = self.queue_depth;
        let direct = match (prev, entries.first()) {
            (Some(prev), Some(first)) => first.at.saturating_duration_since(prev) >= BURST_GAP,
            _ => true,
        };
        log.endpoints.retain(|(_, ep)| ep.push(entries, depth, direct));
    }

    /// Notes where `user`'s log stands (Redis mode, read at attach): what this node has seen.
    pub fn observe(&self, user: &str, epoch: &str, head: u64) {
        let Some(slot) = self.users.get(user).map(|s| s.clone()) else { return };
        let mut log = slot.lock();
        let mut freed = 0;
        if *log.epoch != *epoch {
            log.epoch = Arc::from(epoch);
            freed += log.ring.trim_bytes(0);
            log.ring = Ring::new(); // a new life starts its seqs again
        }
        freed += log.ring.observe(head);
        self.log_bytes.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Tells every endpoint of `user` here to close with `code`.
    pub fn close_user(&self, user: &str, code: u16) {
        if let Some(slot) = self.users.get(user).map(|s| s.clone()) {
            for (_, ep) in &slot.lock().endpoints {
                ep.close(code);
            }
        }
    }

    /// Every user with endpoints here, with the epoch and newest seq this node has seen of their
    /// log (Redis mode: what a resubscribed node compares with Redis to catch up).
    pub fn seen(&self) -> Vec<(Arc<str>, Arc<str>, u64)> {
        self.users
            .iter()
            .filter_map(|slot| {
                let log = slot.lock();
                (!log.endpoints.is_empty())
                    .then(|| (log.user.clone(), log.epoch.clone(), log.ring.head()))
            })
            .collect()
    }

    /// The newest seq of the user's log.
    pub fn head(&self, user: &str) -> u64 {
        self.users.get(user).map(|s| s.lock().ring.head()).unwrap_or(0)
    }

    /// The retained events of `user` with `after < seq <= upto` (at most the head) in `epoch`,
    /// if all are held.
    pub fn retained(
        &self,
        user: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Option<Vec<Arc<Entry>>> {
        let slot = self.users.get(user).map(|s| s.clone())?;
        let log = slot.lock();
        if *log.epoch != *epoch {
            return None;
        }
        // Reading past the head reads up to it (a reader catching up asks for a chunk).
        log.ring.range(after, upto)
    }

    /// Drops retained events older than the retention age, and the logs of users with no
    /// endpoint and nothing retained. Called periodically by a background task.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let retention = self.retention;
        let before = self.users.len();
        self.users.retain(|_, slot| {
            let mut log = slot.lock();
            let freed = log.ring.trim_age(retention, now);
            self.log_bytes.fetch_sub(freed, Ordering::Relaxed);
            let idle = log.endpoints.is_empty() && log.reserved == 0;
            let expired =
                log.ring.newest_at().is_none_or(|at| now.duration_since(at) > retention.age);
            if idle && expired {
                self.log_bytes.fetch_sub(log.ring.bytes(), Ordering::Relaxed);
                log.retired = true;
                tracing::trace!(user = %log.user, "user log retired");
                return false;
            }
            true
        });
        // Logs made meanwhile (a user connecting during the sweep) can outnumber those retired.
        before.saturating_sub(self.users.len())
    }

    /// Tells every endpoint to close with `code` (drain).
    pub fn close_all(&self, code: u16) {
        for slot in self.users.iter() {
            for (_, ep) in &slot.lock().endpoints {
                ep.close(code);
            }
        }
    }

    /// The metrics, for a part that outlives a borrow of the hub (a backplane's task).
    pub fn shared_metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Number of users with a log in memory.
    pub fn users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests;
