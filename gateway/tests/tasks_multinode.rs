//! Tasks across two gateway processes on one Redis (and one PostgreSQL store): a task made on
//! one node streams to devices on both, is read, listed and cancelled through either, over
//! HTTP, a device frame and A2A, and once ended is stored once and listed by both.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::TestRedis;
use common::*;
use serde_json::{Value, json};
use wire::EventBody;

async fn ids(gw: &TestGateway, user: &str, q: &str) -> Vec<String> {
    let (s, page) = gw.get_json(&format!("/v1/tasks?{q}"), &token(user, None)).await;
    assert_eq!(s, 200, "{page}");
    task_ids(&page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_the_same_on_every_node_and_stored_once() {
    let redis = TestRedis::start();
    let p = format!("tk{:x}", rand::random::<u32>());
    let url = common::pg::database_url();
    let schema = common::pg::unique("gwtasks");
    let _drop = common::pg::DropSchema { url: url.clone(), schema: schema.clone() };
    let store = [("GATEWAY_STORE_URL", url.as_str()), ("GATEWAY_STORE_SCHEMA", schema.as_str())];
    let a = TestGateway::on_redis(&redis.url, &p, "node-a", &store);
    let b = TestGateway::on_redis(&redis.url, &p, "node-b", &store);
    let mut on_a = a.device("mt", "").await;
    let mut on_b = b.device("mt", "").await;

    let body = json!({"user_id": "mt", "context_id": "c", "title": "trip", "task_id": "trip"});
    assert_eq!(a.post_json("/v1/tasks", &producer_token(), &body).await.0, 201);
    assert_eq!(
        b.post_json("/v1/tasks", &producer_token(), &body).await.0,
        200,
        "idempotent on any node"
    );
    let chunk = json!({"artifact": {"artifact_id": "plan", "parts": [{"text": "day 1"}]}});
    let (s, _) = b.post_json("/v1/tasks/trip/events", &producer_token(), &chunk).await;
    assert_eq!(s, 200);
    for ws in [&mut on_a, &mut on_b] {
        let kinds: Vec<&str> =
            [ws.event().await, ws.event().await].iter().map(|e| e.body.kind()).collect();
        assert_eq!(kinds, ["task.status", "task.artifact"]);
    }
    let (_, t) = a.get_json("/v1/tasks/trip", &token("mt", None)).await;
    assert_eq!(t["artifacts"][0]["parts"][0]["text"], "day 1", "{t}");
    assert_eq!(ids(&b, "mt", "state=active").await, ["trip"]);

    // A2A on node b follows it; node a's device cancels it.
    let sub =
        json!({"jsonrpc": "2.0", "id": 1, "method": "SubscribeToTask", "params": {"id": "trip"}});
    let resp =
        b.http.post(b.url("/a2a")).bearer_auth(token("mt", None)).json(&sub).send().await.unwrap();
    let mut follow = SseClient::from_response(resp);
    let first: Value = serde_json::from_str(&follow.event().await.data).unwrap();
    assert_eq!(first["result"]["task"]["id"], "trip");
    on_a.send_json(json!({"type": "task.cancel", "task_id": "trip"})).await;
    let last: Value = serde_json::from_str(&follow.event().await.data).unwrap();
    assert_eq!(last["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_CANCELED");
    assert!(follow.next().await.is_none(), "closed after the terminal state");
    let e = on_b.event().await;
    assert!(matches!(e.body, EventBody::TaskStatus { state: wire::task::TaskState::Canceled, .. }));
    let (s, r) = a.post_json("/v1/tasks/trip/events", &producer_token(), &chunk).await;
    assert_eq!((s, &r["error"]["code"]), (409, &json!("task_ended")));

    // Stored once (whichever node drained it), and listed by both as ended.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ready) = a.get_json("/readyz", "").await;
        if ready["store"]["outbox"]["backlog"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not stored: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for gw in [&a, &b] {
        assert_eq!(ids(gw, "mt", "state=terminal").await, ["trip"]);
        assert!(ids(gw, "mt", "state=active").await.is_empty());
    }
    use store_client::Tasks;
    let stored = common::pg::postgres(&url, &schema).await.task("trip").await.unwrap();
    let stored = stored.expect("in the store");
    assert_eq!(stored.task.state, wire::task::TaskState::Canceled);
    assert_eq!(stored.task.artifacts.unwrap()[0].parts.len(), 1);
}
