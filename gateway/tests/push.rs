//! PROTOCOL.md v1.1, §Notifications, Push, on the real binary against a real webhook receiver
//! (an HTTP server in this test): who is pushed, the signature, the key kept across retries,
//! one accepted call, retracts on read, and a backlog that survives a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "push-secret-0123456789";

/// One call the webhook received: its key, whether its signature held, its body, the answer.
#[derive(Debug, Clone)]
struct Call {
    key: String,
    signed: bool,
    body: Value,
    answered: u16,
}

/// A webhook that fails the first `fail_first` calls (503), then answers 200.
struct Hook {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    fail_first: Arc<AtomicUsize>,
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

async fn hook(fail_first: usize) -> Hook {
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
    fn env(&self) -> [(&'static str, String); 2] {
        [
            ("GATEWAY_PUSH_WEBHOOK_URL", self.url.clone()),
            ("GATEWAY_PUSH_WEBHOOK_SECRET", SECRET.into()),
        ]
    }

    fn calls_for(&self, id: &str) -> Vec<Call> {
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
    async fn accepted(&self, id: &str, secs: u64) -> Vec<Call> {
        for _ in 0..secs * 10 {
            if self.calls_for(id).iter().any(|c| c.answered == 200) {
                return self.calls_for(id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no accepted call about {id}: {:?}", self.calls.lock());
    }
}

async fn notify(gw: &TestGateway, user: &str, priority: &str) -> String {
    let body =
        json!({"user_id": user, "category": "c", "priority": priority, "title": "t", "body": "b"});
    let (s, r) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!(s, 202, "{r}");
    r["id"].as_str().unwrap().to_owned()
}

fn start(hook: &Hook) -> TestGateway {
    let env = hook.env();
    TestGateway::start(&[(env[0].0, env[0].1.as_str()), (env[1].0, env[1].1.as_str())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_users_are_pushed_once_signed_and_retracted_on_read() {
    let hook = hook(1).await;
    let gw = start(&hook);
    let pushed = notify(&gw, "off", "high").await;
    let calls = hook.accepted(&pushed, 15).await;
    assert_eq!(calls.len(), 2, "one failure, one retry: {calls:?}");
    assert!(calls.iter().all(|c| c.signed && c.key == calls[0].key), "signed, one key: {calls:?}");
    let body = &calls[1].body;
    assert_eq!(
        (body["type"].as_str(), body["user_id"].as_str()),
        (Some("notification"), Some("off"))
    );
    assert_eq!(body["tenant"], Value::Null);
    assert_eq!(body["notification"]["priority"], "high");
    assert!(
        body["notification"].get("seq").is_none()
            && body["notification"].get("unread_count").is_none()
    );

    // Below the minimum priority: not pushed. Online: not pushed, unless critical.
    let low = notify(&gw, "off", "normal").await;
    let mut device = gw.ws("on", "").await;
    device.hello().await;
    let online = notify(&gw, "on", "high").await;
    let critical = notify(&gw, "on", "critical").await;
    hook.accepted(&critical, 10).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(hook.calls_for(&low).is_empty() && hook.calls_for(&online).is_empty());

    // Read on some device: one retract listing it, once.
    let mark = json!({"ids": [pushed, low], "status": "read"});
    let (s, _) = gw.post_json("/v1/users/off/notifications/mark", &token("off", None), &mark).await;
    assert_eq!(s, 200);
    for _ in 0..50 {
        if hook.calls.lock().iter().any(|c| c.body["type"] == "retract") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let retracts: Vec<Call> =
        hook.calls.lock().iter().filter(|c| c.body["type"] == "retract").cloned().collect();
    assert_eq!(retracts.len(), 1, "{retracts:?}");
    assert_eq!(retracts[0].body, json!({"type": "retract", "user_id": "off", "ids": [pushed]}));
    let (s, _) = gw
        .post_json(
            "/v1/users/off/notifications/mark",
            &token("off", None),
            &json!({"all": true, "status": "archived"}),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        hook.calls.lock().iter().filter(|c| c.body["type"] == "retract").count(),
        1,
        "retracted once"
    );
    assert_eq!(gw.metric("gateway_push_total{result=\"sent\"}").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_backlog_survives_a_restart() {
    let hook = hook(usize::MAX).await;
    let dir = temp_dir("gw-push");
    let env = hook.env();
    let env = [(env[0].0, env[0].1.as_str()), (env[1].0, env[1].1.as_str())];
    let mut first = TestGateway::start_in(&dir, &env);
    first.keep_data = true;
    let id = notify(&first, "away", "high").await;
    for _ in 0..50 {
        if !hook.calls_for(&id).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!hook.calls_for(&id).is_empty(), "tried once while the webhook fails");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(first);
    hook.fail_first.store(0, Ordering::SeqCst);
    let _again = TestGateway::start_in(&dir, &env);
    let calls = hook.accepted(&id, 20).await;
    assert_eq!(calls.iter().filter(|c| c.answered == 200).count(), 1);
    assert!(calls.iter().all(|c| c.key == calls[0].key));
}
