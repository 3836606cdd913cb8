//! Push to devices that are offline (PROTOCOL.md v1.1, §Notifications, Push): calls to the
//! webhook, queued in the store's push outbox (a restart loses none) and made by a background
//! sender on every node: signed (`X-Gateway-Signature`), keyed (`Idempotency-Key`, the same
//! on every retry), retried with backoff and jitter from within 5 s up to 5 minutes for 24 h,
//! final on a 4xx other than 408 and 429, never again after a 2xx.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use store_client::{PushEntry, PushResult, TurnStore};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Calls taken per round.
const BATCH: u32 = 32;
/// How long a claimed call is this node's.
const LEASE: Duration = Duration::from_secs(30);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the queue is looked at when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(1);
/// The first retry comes within this, and each next one after twice as long…
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// …up to this.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// A call still failing this long after it was queued is given up.
const HORIZON: Duration = Duration::from_secs(24 * 3600);

/// Where and how to push.
#[derive(Clone)]
pub struct PushConfig {
    pub url: String,
    pub secret: String,
    /// The lowest priority pushed to an offline user.
    pub min_priority: wire::Priority,
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new(); // HMAC takes a key of any length
    };
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The delay before retry number `attempts` (1, 2, …): up to 5 s, then doubling to 5 minutes,
/// each with jitter (half to all of it), so a webhook coming back is not hit by every call at once.
pub fn backoff(attempts: u32) -> Duration {
    let full = FIRST_RETRY.saturating_mul(1 << attempts.saturating_sub(1).min(10)).min(MAX_RETRY);
    full.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

pub struct PushSender {
    store: Arc<dyn TurnStore>,
    http: reqwest::Client,
    cfg: PushConfig,
    metrics: Arc<Metrics>,
    /// Woken when a call is queued.
    pub wake: Notify,
}

enum Answer {
    Sent,
    Final(String),
    Retry(String),
}

impl PushSender {
    pub fn new(store: Arc<dyn TurnStore>, cfg: PushConfig, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().unwrap_or_default();
        PushSender { store, http, cfg, metrics, wake: Notify::new() }
    }

    pub fn config(&self) -> &PushConfig {
        &self.cfg
    }

    /// Queues a call and wakes the sender.
    pub async fn enqueue(&self, e: &PushEntry) -> Result<(), store_client::StoreError> {
        self.store.push_enqueue(e).await?;
        self.metrics.push_queued.increment(1);
        self.wake.notify_one();
        Ok(())
    }

    /// Makes due calls until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            match self.round().await {
                Ok(n) if n == BATCH as usize => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "push outbox unreachable; next round"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn round(&self) -> Result<usize, store_client::StoreError> {
        let now = store_client::outbox::now_ms();
        let due = self.store.push_claim(now, LEASE.as_millis() as i64, BATCH).await?;
        let n = due.len();
        for e in due {
            self.settle(&e, self.call(&e).await).await?;
        }
        Ok(n)
    }

    async fn call(&self, e: &PushEntry) -> Answer {
        let t = store_client::outbox::now_ms() / 1000;
        let sent = self
            .http
            .post(&self.cfg.url)
            .header("content-type", "application/json")
            .header("idempotency-key", &e.key)
            .header("x-gateway-signature", signature(&self.cfg.secret, t, &e.body))
            .body(e.body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Answer::Sent,
            Ok(r) if r.status().is_client_error() && ![408, 429].contains(&r.status().as_u16()) => {
                Answer::Final(format!("HTTP {}", r.status()))
            }
            Ok(r) => Answer::Retry(format!("HTTP {}", r.status())),
            Err(e) => Answer::Retry(e.to_string()),
        }
    }

    async fn settle(&self, e: &PushEntry, answer: Answer) -> Result<(), store_client::StoreError> {
        let now = store_client::outbox::now_ms();
        match answer {
            Answer::Sent => {
                self.store.push_done(&e.key, PushResult::Sent).await?;
                let counter = if e.kind == "retract" {
                    &self.metrics.push_retracted
                } else {
                    &self.metrics.push_sent
                };
                counter.increment(1);
            }
            Answer::Retry(why) if now - e.created_at_ms < HORIZON.as_millis() as i64 => {
                let attempts = e.attempts + 1;
                let due = now + backoff(attempts).as_millis() as i64;
                tracing::info!(key = %e.key, attempts, error = %why, "push failed; will retry");
                self.store.push_retry(&e.key, attempts, due).await?;
                self.metrics.push_retried.increment(1);
            }
            Answer::Retry(why) | Answer::Final(why) => {
                tracing::warn!(key = %e.key, error = %why, "push given up");
                self.store.push_done(&e.key, PushResult::Failed).await?;
                self.metrics.push_failed.increment(1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // The value computed independently, with Python's hmac module.
        let s = signature("0123456789abcdef", 1700000000, "{}");
        let want = "e4f8e2ecae2295b2ddb2f0b5584c8275e226c0ebe9b3b819e70156bb67122e3e";
        assert_eq!(s, format!("t=1700000000,v1={want}"));
    }

    #[test]
    fn backoff_starts_within_five_seconds_and_stops_at_five_minutes() {
        assert!(backoff(1) <= FIRST_RETRY && backoff(1) >= FIRST_RETRY / 2);
        assert!(backoff(30) <= MAX_RETRY && backoff(30) >= MAX_RETRY / 2);
    }
}
