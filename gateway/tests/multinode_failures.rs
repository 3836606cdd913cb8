//! What several gateway nodes on one Redis survive: a node killed with -9 leaves presence
//! within the TTL and its clients resume on a survivor; a Redis restart gives 503s, then a new
//! epoch and service again; presence entries lost in Redis are registered again; a lost
//! subscription connection loses nothing; a turn ended on a node that died before storing it
//! is stored once by another.

mod common;

use std::time::{Duration, Instant};

use common::nodes::*;
use common::redis_server::TestRedis;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_presence_within_the_ttl_and_its_clients_resume_on_a_survivor() {
    let redis = TestRedis::start();
    let p = prefix();
    let fast = [("GATEWAY_PRESENCE_TTL_MS", "1500"), ("GATEWAY_HEARTBEAT_MS", "300")];
    let mut n1 = TestGateway::on_redis(&redis.url, &p, "doomed", &fast);
    let n2 = TestGateway::on_redis(&redis.url, &p, "survivor", &fast);
    let mut clients = Vec::new();
    for d in 0..3 {
        let mut ws = n1.ws("fay", &format!("device_id=d{d}")).await;
        let (epoch, _, _) = ws.hello().await;
        clients.push((ws, epoch));
    }
    let mut other = n2.device("fay", "device_id=other").await;
    // Keep reading it, so it answers the (fast) pings and stays alive.
    let reader = tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = other.ws.next().await {}
    });
    n2.notify("fay", "before", None).await;
    for (ws, _) in &mut clients {
        assert_eq!(ws.event().await.seq, 1);
    }
    assert_eq!(presence_ids(&n2, "fay").await.len(), 4);

    n1.signal("KILL");
    n1.wait_exit(Duration::from_secs(5)).expect("killed");
    let killed = Instant::now();
    // Events go on meanwhile through the survivor.
    for i in 0..5 {
        n2.notify("fay", &format!("while-dead-{i}"), None).await;
    }
    loop {
        let left = presence_ids(&n2, "fay").await;
        if left == vec![("other".to_string(), "survivor".to_string())] {
            break;
        }
        assert!(killed.elapsed() < Duration::from_millis(1500 + 1500), "still listed: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (d, (_, epoch)) in clients.into_iter().enumerate() {
        let mut ws = n2.ws("fay", &format!("device_id=d{d}&epoch={epoch}&after=1")).await;
        let (_, seq, resumed) = ws.hello().await;
        assert!(resumed);
        assert_eq!(seq, 6);
        let events: Vec<u64> = [
            ws.event().await,
            ws.event().await,
            ws.event().await,
            ws.event().await,
            ws.event().await,
        ]
        .iter()
        .map(|e| e.seq)
        .collect();
        assert_eq!(events, vec![2, 3, 4, 5, 6], "nothing lost, nothing twice");
    }
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gives_503s_while_down_then_a_new_epoch_and_service_again() {
    let mut redis = TestRedis::private();
    let p = prefix();
    let n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &[]);
    let n2 = TestGateway::on_redis(&redis.url, &p, "node-2", &[]);
    let mut ws = n2.ws("gus", "device_id=phone").await;
    let (epoch, _, _) = ws.hello().await;
    n1.notify("gus", "one", None).await;
    assert_eq!(ws.event().await.seq, 1);

    redis.stop();
    let (s, e) = n1.notify("gus", "lost?", None).await;
    assert_eq!(s, 503, "never 2xx for an event that was not logged: {e}");
    assert_eq!(e["error"]["code"], "redis_unavailable");
    let (s, e) = n1.create_turn("gus", "c", "t-down").await;
    assert_eq!(s, 503, "{e}");
    let (s, r) = n2.get_json("/readyz", "").await;
    assert_eq!(s, 503, "{r}");
    assert_eq!(r["error"]["code"], "redis_unavailable");

    redis.restart();
    // Service comes back once the nodes have reconnected and resubscribed.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (a, _) = n1.get_json("/readyz", "").await;
        let (b, _) = n2.get_json("/readyz", "").await;
        if a == 200 && b == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "nodes did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = n1.notify("gus", "after", None).await;
    assert_eq!(s, 202);
    // The phone stayed connected; the log it knew is gone, so it is told to come back...
    let code = ws.close_code().await;
    assert_eq!(code, Some(wire::close::SLOW_CONSUMER));
    // ...and learns it cannot resume: a new epoch.
    let mut again = n2.ws("gus", &format!("device_id=phone&epoch={epoch}&after=1")).await;
    let (new_epoch, head, resumed) = again.hello().await;
    assert!(!resumed);
    assert_ne!(new_epoch, epoch);
    assert_eq!(head, 1);
    n2.notify("gus", "again", None).await;
    let e: Value = serde_json::to_value(again.event().await).unwrap();
    assert_eq!(e["seq"], 2);
}

#[tokio::test]
async fn presence_entries_lost_in_redis_are_registered_again_by_their_node() {
    let redis = TestRedis::start();
    let p = prefix();
    let fast = [("GATEWAY_PRESENCE_TTL_MS", "1500"), ("GATEWAY_HEARTBEAT_MS", "300")];
    let n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &fast);
    let _ws = n1.device("hal", "device_id=phone").await;
    assert_eq!(presence_ids(&n1, "hal").await.len(), 1);
    // As if the entries had expired while the node was cut off from Redis.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{p}:{{hal}}:p*")).query_async(&mut conn).await.unwrap();
    assert!(!keys.is_empty());
    let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    assert!(presence_ids(&n1, "hal").await.is_empty());
    until_presence(&n1, "hal", 1, "the node registers its live endpoint again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_connection_loses_nothing() {
    let redis = TestRedis::private();
    let p = prefix();
    let n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &[]);
    let n2 = TestGateway::on_redis(&redis.url, &p, "node-2", &[]);
    let mut ws = n1.device("ivy", "device_id=phone").await;
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for round in 0..3 {
        for i in 0..50 {
            let (s, _) = n2.notify("ivy", &format!("r{round}-{i}"), None).await;
            assert_eq!(s, 202);
        }
        // Node 1's subscription connection dies, and a burst is published while it reconnects.
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(killed >= 1, "no subscription connection to kill");
        let titles: Vec<String> = (0..50).map(|i| format!("burst{round}-{i}")).collect();
        let burst = titles.iter().map(|t| n2.notify("ivy", t, None));
        for (s, _) in futures_util::future::join_all(burst).await {
            assert_eq!(s, 202);
        }
    }
    let mut seqs = Vec::new();
    for _ in 0..300 {
        seqs.push(ws.event().await.seq);
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>(), "every event once, in order, no close");
    // And the node says it is ready again.
    let (s, r) = n1.get_json("/readyz", "").await;
    assert_eq!(s, 200, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_ended_on_a_node_that_died_before_storing_it_is_stored_once_by_another() {
    let redis = TestRedis::start();
    let p = prefix();
    let url = common::pg::database_url();
    let schema = common::pg::unique("gwredis");
    let _drop = common::pg::DropSchema { url: url.clone(), schema: schema.clone() };
    let (proxy, via) = common::pg::proxied(&url).await;
    let store = [
        ("GATEWAY_STORE_URL", via.as_str()),
        ("GATEWAY_STORE_SCHEMA", schema.as_str()),
        ("GATEWAY_OUTBOX_RETRY_BASE_MS", "50"),
        ("GATEWAY_OUTBOX_RETRY_MAX_MS", "200"),
    ];
    let mut n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &store);
    let n2 = TestGateway::on_redis(&redis.url, &p, "node-2", &store);
    // Stored normally first: once, whichever node ends it.
    n1.create_turn("jo", "cj", "t-ok").await;
    n2.send_items("t-ok", &[json!({"delta": "fine"}), end_item()]).await;
    assert_eq!(stored(&n2, "cj", 1).await.len(), 1);

    // The store goes away; a turn ends on node 1, which then dies before it could store it.
    proxy.set_up(false);
    let (items, text) = deltas(20, "lost?");
    n1.create_turn("jo", "cj", "t-orphan").await;
    let mut all = items;
    all.push(end_item());
    assert_eq!(n1.send_items("t-orphan", &all).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    n1.signal("KILL");
    n1.wait_exit(Duration::from_secs(5)).expect("killed");
    let (_, ready) = n2.get_json("/readyz", "").await;
    assert_eq!(ready["store"]["outbox"]["backlog"], 1, "the outbox is in Redis: {ready}");

    proxy.set_up(true);
    let turns = stored(&n2, "cj", 2).await;
    assert_eq!(turns.len(), 2, "each turn once");
    let orphan = turns.iter().find(|t| t["turn_id"] == "t-orphan").expect("stored by node 2");
    assert_eq!(orphan["text"], text.as_str());
}
