//! Helpers of the tests of several Redis-mode nodes (`multinode.rs`, `multinode_failures.rs`).

use std::time::{Duration, Instant};

use wire::{EventBody, LogEvent};

use super::{SseClient, TestGateway, token};

/// A Redis key prefix of its own, so tests sharing a Redis stay apart.
pub fn prefix() -> String {
    format!("mn{:x}", rand::random::<u32>())
}

/// SSE events until the `turn.end` of `turn_id`.
pub async fn sse_until_end(sse: &mut SseClient, turn_id: &str) -> Vec<LogEvent> {
    let mut out = Vec::new();
    loop {
        let e = sse.event().await;
        let ev: LogEvent = serde_json::from_str(&e.data).unwrap();
        let end = matches!(&ev.body, EventBody::TurnEnd { turn_id: t, .. } if t == turn_id);
        out.push(ev);
        if end {
            return out;
        }
    }
}

pub async fn presence_ids(gw: &TestGateway, user: &str) -> Vec<(String, String)> {
    let (s, p) = gw.get_json(&format!("/v1/users/{user}/presence"), &token(user, None)).await;
    assert_eq!(s, 200, "{p}");
    let mut ids: Vec<(String, String)> = p["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["device_id"].as_str().unwrap().into(), e["node_id"].as_str().unwrap().into()))
        .collect();
    ids.sort();
    ids
}

/// Waits up to 5 s until `user` has `n` endpoints listed, as `gw` sees presence; `why` names
/// what the test waits for.
pub async fn until_presence(gw: &TestGateway, user: &str, n: usize, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while presence_ids(gw, user).await.len() != n {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
