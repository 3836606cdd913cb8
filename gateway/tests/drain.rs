//! A drain in Redis mode hands back what the node held of the shared outbox: turns that ended
//! while the store was down are stored within seconds of its return by the restarted node, not
//! after their lease or backoff ran out (issue "Log-backed delivery", found: 56 s).

mod common;

use std::time::{Duration, Instant};

use common::pg::{DropSchema, database_url, proxied, unique};
use common::redis_server::TestRedis;
use common::*;
use serde_json::{Value, json};

async fn stored(gw: &TestGateway, conv: &str) -> usize {
    let admin = token("ops", Some("gateway.admin"));
    let (s, page) = gw.get_json(&format!("/v1/conversations/{conv}/turns?limit=100"), &admin).await;
    if s != 200 {
        return 0;
    }
    page["turns"].as_array().map_or(0, Vec::len)
}

// The proxy's tasks must run while the harness blocks on the child's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_back_its_outbox_entries_so_they_are_stored_at_once() {
    let redis = TestRedis::start();
    let url = database_url();
    let schema = unique("gwdrain");
    let (proxy, via) = proxied(&url).await;
    let _drop = DropSchema { url, schema: schema.clone() };
    let prefix = format!("dr{:x}", rand::random::<u32>());
    let env = [
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_STORE_URL", via.as_str()),
        ("GATEWAY_STORE_SCHEMA", schema.as_str()),
        ("GATEWAY_DRAIN_TIMEOUT_MS", "3000"),
        // A failed attempt backs off 15-30 s: only a hand-back makes them due at once.
        ("GATEWAY_OUTBOX_RETRY_BASE_MS", "30000"),
    ];
    let mut first = TestGateway::start(&env);
    assert_eq!(first.create_turn("dora", "cdrain", "warm").await.0, 201);
    assert_eq!(first.send_items("warm", &[json!({"delta": "w"}), end_item()]).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(&first, "cdrain").await < 1 {
        assert!(Instant::now() < deadline, "the store never took the first turn");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set_up(false);
    for i in 0..3 {
        let id = format!("down{i}");
        assert_eq!(first.create_turn("dora", "cdrain", &id).await.0, 201);
        let (s, b): (u16, Value) =
            first.send_items(&id, &[json!({"delta": "x"}), end_item()]).await;
        assert_eq!(s, 200, "{b}");
    }
    // Let the node try (and back off) a few times while the store is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.signal("TERM");
    first.wait_exit(Duration::from_secs(15)).expect("drained");
    let second = TestGateway::start(&env);
    proxy.set_up(true);
    let back = Instant::now();
    while stored(&second, "cdrain").await < 4 {
        assert!(
            back.elapsed() < Duration::from_secs(8),
            "the handed-back turns waited out their lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&second, "cdrain").await, 4, "each once");
}
