//! Several gateway processes on one Redis behave as one gateway: devices on different nodes get
//! the same events, a producer may call any node, a client resumes on another node, presence
//! and turn state are the same from every node; a node killed with -9 leaves presence within the
//! TTL and its clients resume on a survivor; a Redis restart is survived.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::TestRedis;
use common::*;
use serde_json::{Value, json};
use wire::{ControlFrame, EventBody, LogEvent};

/// A node of a cluster of gateways sharing `redis` under one prefix.
fn node(redis: &str, prefix: &str, id: &str, extra: &[(&str, &str)]) -> TestGateway {
    let mut env = vec![
        ("GATEWAY_REDIS_URL", redis),
        ("GATEWAY_REDIS_PREFIX", prefix),
        ("GATEWAY_NODE_ID", id),
    ];
    env.extend_from_slice(extra);
    TestGateway::start(&env)
}

fn prefix() -> String {
    format!("mn{:x}", rand::random::<u32>())
}

/// Waits until conversation `conv` has `n` stored turns (read as an admin); returns them.
async fn stored_in(gw: &TestGateway, conv: &str, n: usize) -> Vec<Value> {
    let admin = token("ops", Some("gateway.admin"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, page) = gw.get_json(&format!("/v1/conversations/{conv}/turns"), &admin).await;
        if s == 200 && page["turns"].as_array().unwrap().len() >= n {
            return page["turns"].as_array().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "{n} turns not stored: {s} {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_contiguous(events: &[LogEvent], from: u64) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (from..from + events.len() as u64).collect::<Vec<_>>(), "contiguous");
}

/// SSE events until the `turn.end` of `turn_id`.
async fn sse_until_end(sse: &mut SseClient, turn_id: &str) -> Vec<LogEvent> {
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

async fn presence_ids(gw: &TestGateway, user: &str) -> Vec<(String, String)> {
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

#[tokio::test]
async fn devices_on_different_nodes_get_a_turn_identically_whichever_node_the_producer_calls() {
    let redis = TestRedis::start();
    let p = prefix();
    let n1 = node(&redis.url, &p, "node-1", &[]);
    let n2 = node(&redis.url, &p, "node-2", &[]);
    let mut phone = n1.ws("alice", "device_id=phone&surface=ios").await;
    let mut laptop = n2.ws("alice", "device_id=laptop&surface=web").await;
    let mut teams = n2.sse("alice", "device_id=teams&surface=teams", None).await;
    let mut bob = n1.ws("bob", "").await;
    let (epoch, _, _) = phone.hello().await;
    let (epoch2, _, _) = laptop.hello().await;
    assert_eq!(epoch, epoch2, "one log, one epoch, on every node");
    teams.hello().await;
    bob.hello().await;

    let (s, b) = n1.create_turn("alice", "c1", "t-multi").await;
    assert_eq!(s, 201, "{b}");
    let (items, text) = deltas(150, "m");
    let mut all = items;
    all.push(end_item());
    let (s, b) = n2.send_items("t-multi", &all).await;
    assert_eq!((s, b["accepted"].as_u64()), (200, Some(151)), "{b}");

    let a = phone.until_end("t-multi").await;
    let b = laptop.until_end("t-multi").await;
    let c = sse_until_end(&mut teams, "t-multi").await;
    assert_eq!(a.len(), 152);
    assert_contiguous(&a, 1);
    assert_eq!(a, b, "the two nodes' WebSockets saw the same events");
    assert_eq!(a, c, "the SSE surface saw the same events");
    let got: String = a
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::TurnDelta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(got, text);

    // Bob got nothing of Alice's: his first event is his own notification, sent via node 2.
    n2.notify("bob", "for bob", None).await;
    let e = bob.event().await;
    assert_eq!(e.seq, 1);
    assert!(matches!(e.body, EventBody::Notification { ref title, .. } if title == "for bob"));
}

#[tokio::test]
async fn a_client_that_drops_from_one_node_resumes_on_another_with_exactly_the_missed_events() {
    let redis = TestRedis::start();
    let p = prefix();
    let n1 = node(&redis.url, &p, "node-1", &[]);
    let n2 = node(&redis.url, &p, "node-2", &[]);
    let mut ws = n1.ws("carol", "device_id=phone").await;
    let (epoch, _, _) = ws.hello().await;
    n1.create_turn("carol", "c", "t-r").await;
    let (items, _) = deltas(40, "r");
    n1.send_items("t-r", &items[..10]).await;
    let seen = {
        let mut seen = Vec::new();
        for _ in 0..11 {
            seen.push(ws.event().await);
        }
        seen
    };
    let last = seen.last().unwrap().seq;
    drop(ws);
    // While the phone is away, the turn goes on through node 2.
    let mut rest = items[10..].to_vec();
    rest.push(end_item());
    n2.send_items("t-r", &rest).await;

    let mut back = n2.ws("carol", &format!("device_id=phone&epoch={epoch}&after={last}")).await;
    match back.control().await {
        ControlFrame::Hello { resumed, epoch: e, seq, node_id, .. } => {
            assert!(resumed, "the log still holds every missed event");
            assert_eq!((e, node_id.as_str()), (epoch.clone(), "node-2"));
            assert_eq!(seq, last + 31);
        }
        other => panic!("{other:?}"),
    }
    let missed = back.until_end("t-r").await;
    assert_contiguous(&missed, last + 1);
    assert_eq!(missed.len(), 31, "exactly the missed events, none twice");
    // And live events continue on the new node.
    n1.notify("carol", "live", None).await;
    assert_eq!(back.event().await.seq, last + 32);
}

#[tokio::test]
async fn presence_turn_state_cancel_and_dedup_are_the_same_from_every_node() {
    let redis = TestRedis::start();
    let p = prefix();
    let n1 = node(&redis.url, &p, "node-1", &[]);
    let n2 = node(&redis.url, &p, "node-2", &[]);
    let mut phone = n1.ws("dan", "device_id=phone").await;
    let mut laptop = n2.ws("dan", "device_id=laptop").await;
    let mut teams = n2.sse("dan", "device_id=teams&surface=teams", None).await;
    phone.hello().await;
    laptop.hello().await;
    teams.hello().await;
    let want = vec![
        ("laptop".to_string(), "node-2".to_string()),
        ("phone".into(), "node-1".into()),
        ("teams".into(), "node-2".into()),
    ];
    assert_eq!(presence_ids(&n1, "dan").await, want);
    assert_eq!(presence_ids(&n2, "dan").await, want);
    laptop.send_json(json!({"type": "presence.get"})).await;
    match laptop.control().await {
        ControlFrame::Presence { endpoints, .. } => assert_eq!(endpoints.len(), 3),
        other => panic!("{other:?}"),
    }

    // A turn made on node 1, synced and cancelled from a device on node 2.
    n1.create_turn("dan", "c", "t-x").await;
    n1.send_items("t-x", &[json!({"delta": "Hello "}), json!({"delta": "wörld"})]).await;
    for _ in 0..3 {
        laptop.event().await;
    }
    laptop.send_json(json!({"type": "turn.sync", "turn_id": "t-x", "ref": 7})).await;
    match laptop.control().await {
        ControlFrame::TurnSnapshot { text, next_index, as_of_seq, .. } => {
            assert_eq!((text.as_str(), next_index, as_of_seq), ("Hello wörld", 2, 3));
        }
        other => panic!("{other:?}"),
    }
    let (s, state) = n2.get_json("/v1/turns/t-x", &producer_token()).await;
    assert_eq!((s, state["text_len"].as_u64()), (200, Some(11)));
    let (s, _) = n2.create_turn("dan", "c", "t-x").await;
    assert_eq!(s, 200, "idempotent from any node");
    let (s, _) = n2.create_turn("eve", "c", "t-x").await;
    assert_eq!(s, 409, "another user's turn id");
    laptop.send_json(json!({"type": "turn.cancel", "turn_id": "t-x"})).await;
    let end = phone.until_end("t-x").await;
    assert!(matches!(
        end.last().unwrap().body,
        EventBody::TurnEnd { status: wire::TurnStatus::Cancelled, .. }
    ));
    let (s, _) = n1.send_items("t-x", &[json!({"delta": "late"})]).await;
    assert_eq!(s, 409, "the producer on node 1 learns of the cancel from node 2");

    let (s1, a) = n1.notify("dan", "once", Some("k")).await;
    let (s2, b) = n2.notify("dan", "twice", Some("k")).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(a["id"], b["id"], "dedup holds across nodes");

    // A clean close leaves presence at once, seen from the other node.
    drop(phone);
    let deadline = Instant::now() + Duration::from_secs(5);
    while presence_ids(&n2, "dan").await.len() != 2 {
        assert!(Instant::now() < deadline, "a closed endpoint leaves presence");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_presence_within_the_ttl_and_its_clients_resume_on_a_survivor() {
    let redis = TestRedis::start();
    let p = prefix();
    let fast = [("GATEWAY_PRESENCE_TTL_MS", "1500"), ("GATEWAY_HEARTBEAT_MS", "300")];
    let mut n1 = node(&redis.url, &p, "doomed", &fast);
    let n2 = node(&redis.url, &p, "survivor", &fast);
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
    let n1 = node(&redis.url, &p, "node-1", &[]);
    let n2 = node(&redis.url, &p, "node-2", &[]);
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
    let n1 = node(&redis.url, &p, "node-1", &fast);
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while presence_ids(&n1, "hal").await.len() != 1 {
        assert!(Instant::now() < deadline, "the node registers its live endpoint again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_devices_on_two_nodes_get_a_turn_identically() {
    let cluster = common::redis_server::TestCluster::start();
    let p = prefix();
    let n1 = node(&cluster.urls[0], &p, "node-1", &[]);
    let seeds = format!(
        "redis+cluster://{}",
        cluster
            .urls
            .iter()
            .map(|u| u.trim_start_matches("redis://").trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(",")
    );
    let n2 = node(&seeds, &p, "node-2", &[]);
    let (_, r) = n1.get_json("/readyz", "").await;
    assert_eq!(r["mode"], "redis");
    // Several users, so their slots (and so their shard channels) fall on different masters.
    let users: Vec<String> = (0..6).map(|i| format!("user-{i}")).collect();
    let mut devices = Vec::new();
    for u in &users {
        let mut a = n1.ws(u, "device_id=a").await;
        let mut b = n2.ws(u, "device_id=b").await;
        a.hello().await;
        b.hello().await;
        devices.push((a, b));
    }
    for (i, u) in users.iter().enumerate() {
        let turn = format!("t-cluster-{i}");
        let producer = if i % 2 == 0 { &n1 } else { &n2 };
        let (s, body) = producer.create_turn(u, "c", &turn).await;
        assert_eq!(s, 201, "{body}");
        let (mut items, _) = deltas(30, &turn);
        items.push(end_item());
        let (s, body) = n2.send_items(&turn, &items).await;
        assert_eq!(s, 200, "{body}");
    }
    for (i, (a, b)) in devices.iter_mut().enumerate() {
        let turn = format!("t-cluster-{i}");
        let on_1 = a.until_end(&turn).await;
        let on_2 = b.until_end(&turn).await;
        assert_eq!(on_1.len(), 32);
        assert_contiguous(&on_1, 1);
        assert_eq!(on_1, on_2, "{turn}: both nodes' devices saw the same events");
    }
    assert_eq!(presence_ids(&n2, "user-3").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_connection_loses_nothing() {
    let redis = TestRedis::private();
    let p = prefix();
    let n1 = node(&redis.url, &p, "node-1", &[]);
    let n2 = node(&redis.url, &p, "node-2", &[]);
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
    let mut n1 = node(&redis.url, &p, "node-1", &store);
    let n2 = node(&redis.url, &p, "node-2", &store);
    // Stored normally first: once, whichever node ends it.
    n1.create_turn("jo", "cj", "t-ok").await;
    n2.send_items("t-ok", &[json!({"delta": "fine"}), end_item()]).await;
    assert_eq!(stored_in(&n2, "cj", 1).await.len(), 1);

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
    let turns = stored_in(&n2, "cj", 2).await;
    assert_eq!(turns.len(), 2, "each turn once");
    let orphan = turns.iter().find(|t| t["turn_id"] == "t-orphan").expect("stored by node 2");
    assert_eq!(orphan["text"], text.as_str());
}

#[tokio::test]
async fn a_node_stopped_cleanly_leaves_presence_at_once() {
    let redis = TestRedis::start();
    let p = prefix();
    let n1 = node(&redis.url, &p, "leaving", &[]);
    let n2 = node(&redis.url, &p, "staying", &[]);
    let mut a = n1.ws("kim", "device_id=a").await;
    let mut b = n1.sse("kim", "device_id=b", None).await;
    let mut c = n2.ws("kim", "device_id=c").await;
    a.hello().await;
    b.hello().await;
    c.hello().await;
    assert_eq!(presence_ids(&n2, "kim").await.len(), 3);
    n1.signal("TERM");
    let mut n1 = n1;
    assert!(n1.wait_exit(Duration::from_secs(15)).expect("drained").success());
    assert_eq!(
        presence_ids(&n2, "kim").await,
        vec![("c".to_string(), "staying".to_string())],
        "removed during the drain, not left to expire"
    );
}
