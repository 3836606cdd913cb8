//! PROTOCOL.md v1.1, §Notifications, Push, on the real binary against a real webhook receiver
//! (an HTTP server in this test): who is pushed, the signature, the key kept across retries,
//! one accepted call, retracts on read, and a backlog that survives a restart.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::webhook::{Call, Hook, hook};
use common::*;
use serde_json::{Value, json};

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
    let _device = gw.device("on", "").await;
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
