//! Several gateway processes on one Redis behave as one gateway: devices on different nodes get
//! the same events, a producer may call any node, a client resumes on another node, presence
//! and turn state are the same from every node, also on a Redis Cluster. What they survive
//! (a node killed, Redis restarted, a lost subscription) is in `multinode_failures.rs`.

mod common;

use std::time::Duration;

use common::nodes::*;
use common::redis_server::TestRedis;
use common::*;
use serde_json::json;
use wire::{ControlFrame, EventBody};

#[tokio::test]
async fn devices_on_different_nodes_get_a_turn_identically_whichever_node_the_producer_calls() {
    let redis = TestRedis::start();
    let p = prefix();
    let n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &[]);
    let n2 = TestGateway::on_redis(&redis.url, &p, "node-2", &[]);
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
    let n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &[]);
    let n2 = TestGateway::on_redis(&redis.url, &p, "node-2", &[]);
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
    let n1 = TestGateway::on_redis(&redis.url, &p, "node-1", &[]);
    let n2 = TestGateway::on_redis(&redis.url, &p, "node-2", &[]);
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
    until_presence(&n2, "dan", 2, "a closed endpoint leaves presence").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_devices_on_two_nodes_get_a_turn_identically() {
    let cluster = common::redis_server::TestCluster::start();
    let p = prefix();
    let n1 = TestGateway::on_redis(&cluster.urls[0], &p, "node-1", &[]);
    let seeds = format!(
        "redis+cluster://{}",
        cluster
            .urls
            .iter()
            .map(|u| u.trim_start_matches("redis://").trim_end_matches('/'))
            .collect::<Vec<_>>()
            .join(",")
    );
    let n2 = TestGateway::on_redis(&seeds, &p, "node-2", &[]);
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

#[tokio::test]
async fn a_node_stopped_cleanly_leaves_presence_at_once() {
    let redis = TestRedis::start();
    let p = prefix();
    let n1 = TestGateway::on_redis(&redis.url, &p, "leaving", &[]);
    let n2 = TestGateway::on_redis(&redis.url, &p, "staying", &[]);
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
