//! A webhook receiver for push tests (an HTTP server in the test): it records every call, checks
//! its signature, and fails the first calls it is told to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

use super::now;

pub const SECRET: &str = "push-secret-0123456789";

/// One call the webhook received: its key, whether its signature held, its body, the answer.
#[derive(Debug, Clone)]
pub struct Call {
    pub key: String,
    pub signed: bool,
    pub body: Value,
    pub answered: u16,
}

/// A webhook that fails the first `fail_first` calls (503), then answers 200.
pub struct Hook {
    pub url: String,
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub fail_first: Arc<AtomicUsize>,
}

fn verify(headers: &HeaderMap, body: &str) -> bool {
    let sig = headers.get("x-gateway-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some((t, v1)) = sig.strip_prefix("t=").and_then(|r| r.split_once(",v1=")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let fresh = t.parse::<u64>().is_ok_and(|t| t.abs_diff(now()) < 300);
    want == v1 && fresh
}

pub async fn hook(fail_first: usize) -> Hook {
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let fail = Arc::new(AtomicUsize::new(fail_first));
    let (c, f) = (calls.clone(), fail.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (c, f) = (c.clone(), f.clone());
            async move {
                let failing = f
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let answered = if failing { 503 } else { 200 };
                c.lock().push(Call {
                    key: headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                    signed: verify(&headers, &body),
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                    answered,
                });
                StatusCode::from_u16(answered).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Hook { url, calls, fail_first: fail }
}

impl Hook {
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("GATEWAY_PUSH_WEBHOOK_URL", self.url.clone()),
            ("GATEWAY_PUSH_WEBHOOK_SECRET", SECRET.into()),
        ]
    }

    pub fn calls_for(&self, id: &str) -> Vec<Call> {
        let calls = self.calls.lock();
        calls
            .iter()
            .filter(|c| {
                c.body["notification"]["id"] == id
                    || c.body["ids"].as_array().is_some_and(|a| a.contains(&json!(id)))
            })
            .cloned()
            .collect()
    }

    /// Waits until a call about `id` was accepted (200); returns every call about it.
    pub async fn accepted(&self, id: &str, secs: u64) -> Vec<Call> {
        for _ in 0..secs * 10 {
            if self.calls_for(id).iter().any(|c| c.answered == 200) {
                return self.calls_for(id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no accepted call about {id}: {:?}", self.calls.lock());
    }
}
