//! What several test files check about turns: stored exactly once, seqs without a hole, and
//! nodes of one Redis-mode deployment.

use std::time::Duration;

use serde_json::Value;
use wire::LogEvent;

use super::{TestGateway, token};

/// Waits (up to 20 s) until conversation `conv` has `n` stored turns, read as an admin; fails
/// if it ever has more. Returns them, newest first.
pub async fn stored(gw: &TestGateway, conv: &str, n: usize) -> Vec<Value> {
    let admin = token("ops", Some("gateway.admin"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let path = format!("/v1/conversations/{conv}/turns?limit=100");
    loop {
        let (status, page) = gw.get_json(&path, &admin).await;
        let turns = page["turns"].as_array().cloned().unwrap_or_default();
        if status == 200 && turns.len() >= n {
            assert_eq!(turns.len(), n, "never more than once: {page}");
            return turns;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} turns not stored: {status} {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events' seqs run from `from` with no hole and nothing twice.
pub fn assert_contiguous(events: &[LogEvent], from: u64) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (from..from + events.len() as u64).collect();
    assert_eq!(seqs, want, "seq contiguous, none missing or twice");
}

impl TestGateway {
    /// A node of a deployment of gateways sharing `redis` under `prefix`.
    pub fn on_redis(redis: &str, prefix: &str, id: &str, extra: &[(&str, &str)]) -> TestGateway {
        let mut env = vec![
            ("GATEWAY_REDIS_URL", redis),
            ("GATEWAY_REDIS_PREFIX", prefix),
            ("GATEWAY_NODE_ID", id),
        ];
        env.extend_from_slice(extra);
        TestGateway::start(&env)
    }
}
