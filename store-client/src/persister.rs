//! Drains an [`Outbox`] into a [`TurnStore`]: every waiting turn is stored exactly once,
//! retried with exponential backoff and jitter while the store is down or slow, and set aside
//! (never retried, never dropped silently) when the store refuses it for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::outbox::{AsideFilter, Outbox, Pending};
use crate::{Final, PutOutcome, StoreError, TurnStore};

/// How the persister retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The delay after the first failure; it doubles with each further one.
    pub base: Duration,
    /// The longest delay between attempts.
    pub max: Duration,
    /// How long a claimed entry is hidden from other claims (other workers, other nodes).
    pub lease: Duration,
    /// A store call slower than this counts as a failure (a hung connection must not stall all).
    pub put_timeout: Duration,
    /// Entries claimed at once, and stored concurrently.
    pub batch: usize,
    pub concurrency: usize,
    /// How often the outbox is looked at when nobody wakes the persister.
    pub poll: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
            lease: Duration::from_secs(60),
            put_timeout: Duration::from_secs(10),
            batch: 64,
            concurrency: 8,
            poll: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`: `base · 2^(attempts-1)`, capped at `max`, then
    /// drawn uniformly from its upper half so nodes retrying after one outage do not move in step.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + capped.mul_f64(rand::rng().random_range(0.0..=0.5))
    }
}

/// What the persister has done since start-up (for metrics).
#[derive(Debug, Default)]
pub struct PersistCounters {
    /// Turns the store accepted (first time).
    pub stored: AtomicU64,
    /// Turns the store had already (a retry after a lost answer, a repeated entry).
    pub already_stored: AtomicU64,
    /// Turns of a conversation deleted meanwhile: dropped on purpose.
    pub discarded: AtomicU64,
    /// Failed attempts that will be retried.
    pub retries: AtomicU64,
    /// Turns the store refused for good (set aside).
    pub set_aside: AtomicU64,
    /// The last attempt failed for a passing reason (the store is down, its disk is full):
    /// `/readyz` says so until an attempt succeeds.
    pub failing: AtomicBool,
}

pub struct Persister {
    outbox: Arc<dyn Outbox>,
    store: Arc<dyn TurnStore>,
    policy: RetryPolicy,
    /// Woken when a turn was just enqueued, so it is stored without waiting for the poll.
    wake: Notify,
    pub counters: PersistCounters,
    /// Told how long each store write took (for a latency histogram).
    observer: std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
    /// Makes the span of each store write (traces exported); none by default.
    tracer: std::sync::OnceLock<SpanFor>,
}

type SpanFor = Box<dyn Fn(&Final) -> tracing::Span + Send + Sync>;

impl Persister {
    pub fn new(outbox: Arc<dyn Outbox>, store: Arc<dyn TurnStore>, policy: RetryPolicy) -> Self {
        Persister {
            outbox,
            store,
            policy,
            wake: Notify::new(),
            counters: Default::default(),
            observer: std::sync::OnceLock::new(),
            tracer: std::sync::OnceLock::new(),
        }
    }

    /// Calls `f` with the duration of every store write from now on (set once).
    pub fn observe_writes(&self, f: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.observer.set(Box::new(f));
    }

    /// Runs every store write from now on in the span `f` makes for its entry (set once): the
    /// gateway parents it on the trace the entry carries.
    pub fn trace_writes(&self, f: impl Fn(&Final) -> tracing::Span + Send + Sync + 'static) {
        let _ = self.tracer.set(Box::new(f));
    }

    pub fn store(&self) -> &Arc<dyn TurnStore> {
        &self.store
    }

    pub fn outbox(&self) -> &Arc<dyn Outbox> {
        &self.outbox
    }

    /// Something was enqueued: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Drains until `stop` is cancelled. A pass under way is finished first (each store call
    /// is bounded by `put_timeout`): abandoning it would leave its entries leased, out of reach
    /// of a final [`flush`](Self::flush).
    pub async fn run(&self, stop: CancellationToken) {
        // Entries an earlier life set aside for a passing condition (a full disk, a broken
        // connection) go back in line.
        match self.outbox.retry_set_aside(&AsideFilter::Transient).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(entries = n, "set-aside turns of a passing failure are retried")
            }
            Err(e) => tracing::warn!(error = %e, "cannot look at the set-aside turns"),
        }
        while !stop.is_cancelled() {
            let claimed = self.pass().await;
            // A full batch: more may be due at once.
            if claimed >= self.policy.batch {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.policy.poll) => {}
            }
        }
    }

    /// Claims one batch of due entries and tries each; returns how many were claimed.
    pub async fn pass(&self) -> usize {
        let batch = match self.outbox.claim(self.policy.batch, self.policy.lease).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return 0;
            }
        };
        let n = batch.len();
        futures_util::stream::iter(batch)
            .for_each_concurrent(self.policy.concurrency, |p| self.attempt(p))
            .await;
        n
    }

    /// Stores everything due now, within `deadline` (a drain): what is left stays in the outbox.
    /// Stores everything due now, within `deadline` (a drain): what is left stays in the outbox,
    /// handed back so that whoever drains it next takes it at once.
    pub async fn flush(&self, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, async { while self.pass().await > 0 {} }).await;
        if let Err(e) = self.outbox.release().await {
            tracing::warn!(error = %e, "cannot hand back the outbox entries; they wait out their lease");
        }
    }

    /// Stores `item` now, bypassing the outbox: for a store on the same disk as the outbox
    /// (embedded), where the outbox would only add a second synced write. Counted and timed as
    /// a drained entry is; an error leaves the caller to enqueue it instead.
    pub async fn store_now(&self, item: &Final) -> Result<PutOutcome, StoreError> {
        let done = self.put(item).await?;
        self.count(done);
        Ok(done)
    }

    /// The store's answer for one entry, within `put_timeout`, in the entry's span.
    async fn put(&self, item: &Final) -> Result<PutOutcome, StoreError> {
        let put = async {
            match item {
                Final::Turn(t) => self.store.put(t).await,
                Final::Task(t) => self.store.put_task(t).await,
                // Idempotent on the id (and the push on its key): a second try adds nothing.
                Final::Note(n) => {
                    self.store.inbox_add(&n.note).await?;
                    if let Some(push) = &n.push {
                        self.store.push_enqueue(push).await?;
                    }
                    Ok(PutOutcome::Inserted)
                }
            }
        };
        let span = self.tracer.get().map_or_else(tracing::Span::none, |f| f(item));
        let put = tracing::Instrument::instrument(put, span);
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.policy.put_timeout, put).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "the store did not answer within {:?}",
                self.policy.put_timeout
            ))),
        };
        if let Some(f) = self.observer.get() {
            f(started.elapsed());
        }
        result
    }

    fn count(&self, done: PutOutcome) {
        let c = &self.counters;
        match done {
            PutOutcome::Inserted => &c.stored,
            PutOutcome::AlreadyStored => &c.already_stored,
            PutOutcome::Discarded => &c.discarded,
        }
        .fetch_add(1, Ordering::Relaxed);
        c.failing.store(false, Ordering::Relaxed);
    }

    async fn attempt(&self, p: Pending) {
        let id = p.item.key();
        let result = self.put(&p.item).await;
        let c = &self.counters;
        let outcome = match result {
            Ok(done) => {
                self.count(done);
                self.outbox.complete(&id).await
            }
            Err(e) if e.is_retryable() => {
                c.retries.fetch_add(1, Ordering::Relaxed);
                c.failing.store(true, Ordering::Relaxed);
                let attempts = p.attempts + 1;
                let delay = self.policy.delay(attempts);
                tracing::warn!(key = %id, attempts, ?delay, error = %e, "storing an outbox entry failed; will retry");
                self.outbox.reschedule(&id, attempts, delay, &e.to_string()).await
            }
            Err(e) => {
                c.set_aside.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %id, error = %e, "the store refused an outbox entry; set aside");
                self.outbox.set_aside(&id, &e.to_string()).await
            }
        };
        // The lease runs out and the entry is claimed again: nothing is lost.
        if let Err(e) = outcome {
            tracing::warn!(key = %id, error = %e, "outbox update failed; the entry comes back after its lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for (attempts, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            let full = Duration::from_millis(full);
            let seen: Vec<Duration> = (0..200).map(|_| p.delay(attempts)).collect();
            assert!(seen.iter().all(|d| *d >= full / 2 && *d <= full), "{attempts}: {seen:?}");
            let spread =
                seen.iter().max().unwrap().as_secs_f64() - seen.iter().min().unwrap().as_secs_f64();
            assert!(spread > full.as_secs_f64() / 4.0, "jittered, not in step: {attempts}");
        }
    }
}
