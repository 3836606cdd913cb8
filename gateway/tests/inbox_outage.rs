//! Issue 11: notifications sent while the store is down are still accepted and delivered, wait
//! in the same durable outbox as finished turns, and reach the inbox exactly once when the
//! store is back: embedded mode (whole copies in the SQLite outbox, across a crash), and Redis
//! mode (the notification in Redis, stored by whichever node drains it after the sender died).
//! A push owed meanwhile waits with its notification and is made once the store is back.
//! PostgreSQL is real, taken away and brought back through a proxy.

mod common;

use std::time::Duration;

use common::pg::{DropSchema, database_url, proxied, unique};
use common::redis_server::TestRedis;
use common::webhook::hook;
use common::*;
use serde_json::{Value, json};
use wire::EventBody;

const WAIT: Duration = Duration::from_secs(20);
/// The outbox lease (store_client's RetryPolicy) and a margin.
const LEASE_AND_MORE: Duration = Duration::from_secs(80);

struct Pg {
    proxy: common::pg::proxy::Proxy,
    env: Vec<(&'static str, String)>,
    _drop: DropSchema,
}

async fn pg() -> Pg {
    let url = database_url();
    let schema = unique("gwnote");
    let (proxy, via) = proxied(&url).await;
    let env = vec![
        ("GATEWAY_STORE_URL", via),
        ("GATEWAY_STORE_SCHEMA", schema.clone()),
        ("GATEWAY_OUTBOX_RETRY_BASE_MS", "50".into()),
        ("GATEWAY_OUTBOX_RETRY_MAX_MS", "300".into()),
    ];
    Pg { proxy, env, _drop: DropSchema { url, schema } }
}

fn with<'a>(
    env: &'a [(&'static str, String)],
    more: &[(&'static str, &'a str)],
) -> Vec<(&'static str, &'a str)> {
    let mut v: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    v.extend_from_slice(more);
    v
}

async fn send(gw: &TestGateway, user: &str, title: &str, key: Option<&str>) -> Value {
    let mut body = json!({"user_id": user, "category": "news", "title": title, "body": "b"});
    if let Some(k) = key {
        body["dedup_key"] = k.into();
    }
    let (s, reply) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!(s, 202, "accepted while the store is down: {reply}");
    reply
}

/// Waits until the user's inbox holds `n` notifications; returns the page.
async fn inbox(gw: &TestGateway, user: &str, n: usize) -> Value {
    inbox_within(gw, user, n, WAIT).await
}

async fn inbox_within(gw: &TestGateway, user: &str, n: usize, wait: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let path = format!("/v1/users/{user}/notifications?limit=200");
        let (s, page) = gw.get_json(&path, &token(user, None)).await;
        if s == 200 && page["notifications"].as_array().unwrap().len() >= n {
            assert_eq!(page["notifications"].as_array().unwrap().len(), n, "once: {page}");
            return page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} not in the inbox: {s} {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(page: &Value) -> Vec<String> {
    let list = page["notifications"].as_array().unwrap().iter();
    list.map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

/// The notifications a device receives: (id, unread_count).
async fn received(ws: &mut WsClient, n: usize) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        if let EventBody::Notification { id, unread_count, .. } = ws.event().await.body {
            got.push((id, unread_count.unwrap_or(0)));
        }
    }
    got
}

// The proxy's tasks must run while the harness blocks (on the child's stdout, its exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_notifications_sent_while_the_store_is_down_reach_the_inbox_once_after_a_crash() {
    let pg = pg().await;
    let dir = temp_dir("gw-note-outage");
    let mut gw = TestGateway::start_in(&dir, &with(&pg.env, &[]));
    gw.keep_data = true;
    let first = send(&gw, "nora", "before", None).await;
    let mut ws = gw.device("nora", "").await;

    pg.proxy.set_up(false);
    let mut sent = vec![first["id"].as_str().unwrap().to_owned()];
    for i in 0..5 {
        let r = send(&gw, "nora", &format!("down{i}"), Some(&format!("k{i}"))).await;
        assert_eq!(r["disposition"], "delivered");
        sent.push(r["id"].as_str().unwrap().to_owned());
    }
    // A repeated dedup key during the outage answers the first: nothing kept twice.
    let again = send(&gw, "nora", "down0", Some("k0")).await;
    assert_eq!(again["id"].as_str(), Some(sent[1].as_str()));
    let got = received(&mut ws, 5).await;
    assert_eq!(got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(), sent[1..]);
    // The count goes on from the last one the store told (1).
    assert_eq!(got.iter().map(|g| g.1).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
    let (_, ready) = gw.get_json("/readyz", "").await;
    assert_eq!(ready["store"]["outbox"]["backlog"], 5, "{ready}");

    // The process dies with the store still down; the next one stores what waited.
    gw.signal("KILL");
    gw.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(gw);
    pg.proxy.set_up(true);
    let gw = TestGateway::start_in(&dir, &with(&pg.env, &[]));
    let page = inbox(&gw, "nora", 6).await;
    let mut stored = ids(&page);
    stored.reverse();
    assert_eq!(stored, sent, "every one once, in order");
    assert_eq!((page["unread_count"].as_u64(), page["unseen_count"].as_u64()), (Some(6), Some(6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_redis_mode_another_node_stores_what_a_dead_node_kept() {
    let pg = pg().await;
    let redis = TestRedis::start();
    let p = format!("nk{:x}", rand::random::<u32>());
    let node = |id: &'static str| {
        let more = [
            ("GATEWAY_REDIS_URL", redis.url.as_str()),
            ("GATEWAY_REDIS_PREFIX", p.as_str()),
            ("GATEWAY_NODE_ID", id),
        ];
        TestGateway::start(&with(&pg.env, &more))
    };
    let mut a = node("node-a");
    send(&a, "rex", "before", None).await;
    let mut ws = a.device("rex", "").await;
    pg.proxy.set_up(false);
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push(
            send(&a, "rex", &format!("down{i}"), None).await["id"].as_str().unwrap().to_owned(),
        );
    }
    let got = received(&mut ws, 4).await;
    assert_eq!(got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(), sent);
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(5)).expect("killed");

    pg.proxy.set_up(true);
    let b = node("node-b");
    // An entry the dead node was trying at the moment it died stays leased to it for the
    // lease (60 s) before another node takes it: wait past that.
    let page = inbox_within(&b, "rex", 5, LEASE_AND_MORE).await;
    let stored = ids(&page);
    for id in &sent {
        assert_eq!(stored.iter().filter(|s| *s == id).count(), 1, "{id} once: {page}");
    }
}

/// The push queue is in the store too: a push owed to an offline user while the store is down
/// waits in the outbox with its notification and is made, once, when the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_owed_during_a_store_outage_is_made_once_the_store_is_back() {
    let pg = pg().await;
    let hook = hook(0).await;
    let env = hook.env();
    let more = [(env[0].0, env[0].1.as_str()), (env[1].0, env[1].1.as_str())];
    let gw = TestGateway::start(&with(&pg.env, &more));
    // Seen once (its preferences known), below the push threshold: no call.
    send(&gw, "otto", "before", None).await;
    pg.proxy.set_up(false);
    let body = json!({"user_id": "otto", "category": "news", "priority": "high", "title": "t", "body": "b"});
    let (s, r) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!((s, r["disposition"].as_str()), (202, Some("delivered")), "{r}");
    let id = r["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(hook.calls_for(id).is_empty(), "no call while the store is down");
    pg.proxy.set_up(true);
    let calls = hook.accepted(id, 20).await;
    assert_eq!(calls.len(), 1, "one call: {calls:?}");
    assert!(calls[0].signed);
    assert_eq!(calls[0].key, format!("push-{id}"));
    inbox(&gw, "otto", 2).await;
}
