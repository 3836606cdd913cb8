//! Memory a producer controls is bounded (issue "Hardening", item 6): a user's log keeps at
//! most `GATEWAY_LOG_RETENTION_BYTES` (in embedded mode and in Redis), `/metrics` reports what
//! the logs hold, and a turn its producer abandoned is ended `failed` (`idle_timeout`) and
//! stored, on every backend.

mod common;

use std::time::Duration;

use common::redis_server::TestRedis;
use common::*;
use serde_json::{Value, json};
use wire::{EventBody, TurnStatus};

/// Notifications of about `size` bytes each; returns their seqs.
async fn big_notes(gw: &TestGateway, user: &str, n: usize, size: usize) -> Vec<u64> {
    let body = "b".repeat(size);
    let mut seqs = Vec::new();
    for i in 0..n {
        let req =
            json!({"user_id": user, "category": "big", "title": format!("n{i}"), "body": body});
        let (s, b) = gw.post_json("/v1/notifications", &producer_token(), &req).await;
        assert_eq!(s, 202, "{b}");
        seqs.push(b["seq"].as_u64().unwrap());
    }
    seqs
}

/// 20 notifications of 100 KB into a log capped at 1 MiB: only the newest ~10 can be resumed,
/// and every device that reads still got all of them live.
async fn a_log_keeps_at_most_its_bytes(gw: &TestGateway) {
    let user = format!("heavy{:x}", rand::random::<u32>());
    let mut live = gw.ws(&user, "").await;
    let (epoch, _, _) = live.hello().await;
    let seqs = big_notes(gw, &user, 20, 100_000).await;
    for want in &seqs {
        assert_eq!(live.event().await.seq, *want);
    }
    let mut old = gw.ws(&user, &format!("epoch={epoch}&after=1")).await;
    let (_, head, resumed) = old.hello().await;
    assert_eq!((head, resumed), (20, false), "the oldest left the log for its bytes");
    let mut recent = gw.ws(&user, &format!("epoch={epoch}&after=16")).await;
    let (_, _, resumed) = recent.hello().await;
    assert!(resumed, "the newest four fit in 1 MiB");
    for want in 17..=20 {
        assert_eq!(recent.event().await.seq, want);
    }
}

#[tokio::test]
async fn embedded_logs_keep_at_most_their_bytes_and_metrics_say_what_they_hold() {
    let gw = TestGateway::start(&[("GATEWAY_LOG_RETENTION_BYTES", "1048576")]);
    a_log_keeps_at_most_its_bytes(&gw).await;
    let held = gw.metric("gateway_log_bytes").await;
    assert!(held > 400_000.0 && held <= 1_048_576.0, "gateway_log_bytes {held}");
}

#[tokio::test]
async fn the_node_budget_holds_across_users() {
    let gw = TestGateway::start(&[("GATEWAY_LOG_MEMORY_BYTES", "2097152")]);
    for u in 0..5 {
        big_notes(&gw, &format!("budget{u}"), 8, 100_000).await;
    }
    let held = gw.metric("gateway_log_bytes").await;
    assert!(held <= 2_097_152.0 && held > 1_000_000.0, "gateway_log_bytes {held}");
}

#[tokio::test]
async fn redis_logs_keep_at_most_their_bytes() {
    let redis = TestRedis::start();
    let prefix = format!("mem{:x}", rand::random::<u32>());
    let gw = TestGateway::start(&[
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_LOG_RETENTION_BYTES", "1048576"),
    ]);
    a_log_keeps_at_most_its_bytes(&gw).await;
    let published = gw.metric("gateway_events_published_total").await;
    assert_eq!(published, 20.0, "Redis mode counts what it appends too");
}

/// A turn whose producer went silent after two deltas ends `failed` with `idle_timeout`: the
/// device sees the end, the producer gets 409 after it, history has the text it had.
async fn an_abandoned_turn_is_ended_and_stored(gw: &TestGateway) {
    let user = format!("idle{:x}", rand::random::<u32>());
    let mut ws = gw.ws(&user, "").await;
    ws.hello().await;
    assert_eq!(gw.create_turn(&user, "cidle", "tidle").await.0, 201);
    let (s, _) =
        gw.send_items("tidle", &[json!({"delta": "half "}), json!({"delta": "done"})]).await;
    assert_eq!(s, 200);
    let events = ws.until_end("tidle").await;
    match &events.last().unwrap().body {
        EventBody::TurnEnd { status, error, .. } => {
            assert_eq!(*status, TurnStatus::Failed);
            assert_eq!(error.as_ref(), Some(&Value::from("idle_timeout")));
        }
        other => panic!("{other:?}"),
    }
    let (s, b) = gw.send_items("tidle", &[json!({"delta": "late"})]).await;
    assert_eq!(s, 409, "{b}");
    let admin = token("ops", Some("gateway.admin"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, page) = gw.get_json("/v1/conversations/cidle/turns", &admin).await;
        if let Some(t) = page["turns"].as_array().and_then(|t| t.first()) {
            assert_eq!(
                (t["status"].as_str(), t["text"].as_str()),
                (Some("failed"), Some("half done"))
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never stored: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn embedded_an_abandoned_turn_is_ended_idle_timeout() {
    let gw = TestGateway::start(&[("GATEWAY_TURN_IDLE_TIMEOUT_MS", "1000")]);
    an_abandoned_turn_is_ended_and_stored(&gw).await;
}

#[tokio::test]
async fn redis_an_abandoned_turn_is_ended_idle_timeout() {
    let redis = TestRedis::start();
    let prefix = format!("idl{:x}", rand::random::<u32>());
    let gw = TestGateway::start(&[
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_TURN_IDLE_TIMEOUT_MS", "1000"),
    ]);
    an_abandoned_turn_is_ended_and_stored(&gw).await;
}
