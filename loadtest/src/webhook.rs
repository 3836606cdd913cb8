//! A push webhook receiver that checks what PROTOCOL.md §Notifications promises of every push:
//! an `X-Gateway-Signature` (`t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`) that verifies
//! and is recent, an `Idempotency-Key` on every call, and nothing sent again once a 2xx was
//! answered. It can refuse the first attempt of a share of the keys (503), so the gateway's
//! retries (which must keep the key) are exercised too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// How old a signature's timestamp may be, seconds (as a receiver should check, against replay).
const MAX_SKEW_S: i64 = 300;

/// What the receiver saw.
#[derive(Default)]
pub struct Counts {
    /// Notification pushes answered 2xx (each key once).
    pub accepted: AtomicU64,
    /// Calls refused on purpose (a first attempt), to be retried with the same key.
    pub refused: AtomicU64,
    /// Retries of a refused key that came back (with the same key).
    pub retried: AtomicU64,
    /// A key sent again after a 2xx: the protocol says never.
    pub duplicates: AtomicU64,
    /// Missing, malformed, stale or wrong signatures.
    pub bad_signatures: AtomicU64,
    /// Calls without an `Idempotency-Key`.
    pub missing_keys: AtomicU64,
    /// Retract calls, and the ids they listed.
    pub retracts: AtomicU64,
    pub retracted_ids: AtomicU64,
    /// Milliseconds from the notification's `created_at` to its accepted push.
    pub latencies_ms: Mutex<Vec<f64>>,
}

struct Shared {
    secret: String,
    /// Of 1,000 keys, how many have their first attempt refused.
    refuse_per_mille: u64,
    counts: Arc<Counts>,
    /// Keys answered 2xx, and keys refused once.
    done: Mutex<(HashSet<String>, HashMap<String, u32>)>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    pub counts: Arc<Counts>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    /// Listens on `addr` (127.0.0.1 only; port 0 picks one), checking signatures with `secret`
    /// and refusing the first attempt of `refuse` (0.0–1.0) of the keys.
    pub async fn start(addr: &str, secret: &str, refuse: f64) -> anyhow::Result<Receiver> {
        anyhow::ensure!(addr.starts_with("127.0.0.1:"), "the receiver listens on 127.0.0.1 only");
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}/push", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let shared = Arc::new(Shared {
            secret: secret.to_owned(),
            refuse_per_mille: (refuse.clamp(0.0, 1.0) * 1000.0) as u64,
            counts: counts.clone(),
            done: Mutex::new((HashSet::new(), HashMap::new())),
        });
        let app = axum::Router::new().route("/push", axum::routing::post(push)).with_state(shared);
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned());
            if let Err(e) = serve.await {
                eprintln!("webhook receiver: {e}");
            }
        });
        Ok(Receiver { url, counts, stop })
    }
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Whether `header` signs `body` with `secret`, recently.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (now_s() - t).abs() > MAX_SKEW_S {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let Some(given) = (0..v1.len() / 2)
        .map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

/// Deterministic per key, so a retry of a refused key is not refused again.
fn refused_first(key: &str, per_mille: u64) -> bool {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish() % 1000 < per_mille
}

async fn push(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let c = &s.counts;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if !header("x-gateway-signature").is_some_and(|h| verify(&s.secret, h, &body)) {
        c.bad_signatures.fetch_add(1, Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let Some(key) = header("idempotency-key") else {
        c.missing_keys.fetch_add(1, Relaxed);
        return StatusCode::BAD_REQUEST;
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if v["type"] == "retract" {
        c.retracts.fetch_add(1, Relaxed);
        let ids = v["ids"].as_array().map_or(0, |a| a.len() as u64);
        c.retracted_ids.fetch_add(ids, Relaxed);
        return StatusCode::OK;
    }
    let mut done = s.done.lock();
    if done.0.contains(key) {
        c.duplicates.fetch_add(1, Relaxed);
        return StatusCode::OK;
    }
    let tries = done.1.entry(key.to_owned()).or_default();
    *tries += 1;
    if *tries == 1 && refused_first(key, s.refuse_per_mille) {
        c.refused.fetch_add(1, Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if *tries > 1 {
        c.retried.fetch_add(1, Relaxed);
    }
    done.0.insert(key.to_owned());
    drop(done);
    c.accepted.fetch_add(1, Relaxed);
    let created = v["notification"]["created_at"].as_str().and_then(parse_rfc3339_ms);
    if let Some(ms) = created {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        c.latencies_ms.lock().push((now - ms).max(0) as f64);
    }
    StatusCode::OK
}

/// An RFC 3339 time → Unix ms (`None` when it is not one).
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_and_when_recent() {
        let body = br#"{"type":"notification"}"#;
        let t = now_s();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(verify("s3cret", &format!("t={t},v1={hex}"), body));
        assert!(!verify("other", &format!("t={t},v1={hex}"), body));
        assert!(!verify("s3cret", &format!("t={t},v1={hex}"), b"{}"));
        assert!(!verify("s3cret", &format!("t={},v1={hex}", t - 3600), body), "stale");
        assert!(!verify("s3cret", "v1=00", body));
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("2026-11-30T00:00:00.000Z"), Some(1_795_996_800_000));
        assert_eq!(parse_rfc3339_ms("junk"), None);
    }
}
