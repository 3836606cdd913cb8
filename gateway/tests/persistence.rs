//! Finalised turns reach the store exactly once, through the real gateway: the embedded store,
//! and a real PostgreSQL taken away and brought back through a proxy, across a restart.

mod common;

use std::time::Duration;

use common::pg::{DropSchema, database_url, proxied, unique};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// `GET /v1/conversations/{conv}/turns` with `token`: (status, body).
async fn history(gw: &TestGateway, conv: &str, token: &str) -> (u16, Value) {
    gw.get_json(&format!("/v1/conversations/{conv}/turns?limit=100"), token).await
}

/// A turn of `n` deltas (and two traces) that ends `completed`; returns its text.
async fn finished_turn(
    gw: &TestGateway,
    user: &str,
    conv: &str,
    turn_id: &str,
    n: usize,
) -> String {
    let (s, b) = gw.create_turn(user, conv, turn_id).await;
    assert_eq!(s, 201, "{b}");
    let (mut items, text) = deltas(n, turn_id);
    items.insert(1, json!({"trace": {"kind": "reasoning", "data": {"step": 1}}}));
    items.push(json!({"trace": {"kind": "tool_call", "data": ["search", {"q": "x"}]}}));
    items.push(end_item());
    let (s, b) = gw.send_items(turn_id, &items).await;
    assert_eq!(s, 200, "{b}");
    text
}

#[tokio::test]
async fn a_streamed_turn_is_stored_once_with_the_producers_exact_text_and_traces_apart() {
    let gw = TestGateway::start(&[]);
    let body = json!({"user_id": "alice", "conversation_id": "c1", "turn_id": "t1", "meta": {"model": "m7"}});
    let (s, _) = gw.post_json("/v1/turns", &producer_token(), &body).await;
    assert_eq!(s, 201);
    let (items, text) = deltas(120, "w");
    let mut all = vec![json!({"trace": {"kind": "reasoning", "data": {"why": "é"}}})];
    all.extend(items);
    all.push(end_item());
    assert_eq!(gw.send_items("t1", &all).await.0, 200);
    // The end again, alone and in a retried body: 409, and still one row.
    let (s, _) = gw.post_json("/v1/turns/t1/events", &producer_token(), &end_item()).await;
    assert_eq!(s, 409);
    assert_eq!(gw.send_items("t1", &all).await.0, 409);
    let (s, _) = gw.post_json("/v1/turns", &producer_token(), &body).await;
    assert_eq!(s, 200, "a retried create is the same turn");

    let turns = stored(&gw, "c1", 1).await;
    let t = &turns[0];
    assert_eq!(t["turn_id"], "t1");
    assert_eq!(t["user_id"], "alice");
    assert_eq!(t["status"], "completed");
    assert_eq!(t["text"], text.as_str(), "the producer's exact text");
    assert_eq!(t["meta"], json!({"model": "m7"}));
    assert_eq!(t["truncated"], false);
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(t.get("traces").is_none(), "traces are not loaded with history");

    // The owner reads it; another user sees an empty conversation; an admin sees it.
    let (s, own) = history(&gw, "c1", &token("alice", None)).await;
    assert_eq!((s, own["turns"].as_array().unwrap().len()), (200, 1));
    let (s, other) = history(&gw, "c1", &token("mallory", None)).await;
    assert_eq!((s, other["turns"].as_array().unwrap().len()), (200, 0));
    let (s, traces) = gw.get_json("/v1/turns/t1/traces", &token("alice", None)).await;
    assert_eq!(s, 200, "{traces}");
    assert_eq!(traces["traces"], json!([{"kind": "reasoning", "data": {"why": "é"}}]));
    let (s, _) = gw.get_json("/v1/turns/t1/traces", &token("mallory", None)).await;
    assert_eq!(s, 404, "another user's turn is not revealed");
    let (s, _) = gw.get_json("/v1/turns/t1/traces", &token("ops", Some("gateway.admin"))).await;
    assert_eq!(s, 200);

    // Cancelled and failed turns are stored too, with their status.
    gw.create_turn("alice", "c1", "t-cancel").await;
    gw.send_items("t-cancel", &[json!({"delta": "half"})]).await;
    let mut ws = gw.device("alice", "").await;
    ws.send_json(json!({"type": "turn.cancel", "turn_id": "t-cancel"})).await;
    gw.create_turn("alice", "c1", "t-fail").await;
    let failed = json!({"end": {"status": "failed", "error": {"code": "model_down"}}});
    assert_eq!(gw.send_items("t-fail", &[failed]).await.0, 200);
    let turns = stored(&gw, "c1", 3).await;
    let status = |id: &str| turns.iter().find(|t| t["turn_id"] == id).unwrap()["status"].clone();
    assert_eq!(status("t-cancel"), "cancelled");
    assert_eq!(status("t-fail"), "failed");
    assert_eq!(turns.iter().find(|t| t["turn_id"] == "t-cancel").unwrap()["text"], "half");
    // The counter moves just after the row is visible: wait for it, then hold it to exactly 3.
    let series = "gateway_turns_persisted_total{result=\"stored\"}";
    let deadline = tokio::time::Instant::now() + WAIT;
    while gw.metric(series).await < 3.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.metric(series).await, 3.0);
}

#[tokio::test]
async fn history_pages_newest_first_with_a_cursor_and_deletes_are_guarded() {
    let gw = TestGateway::start(&[]);
    for i in 0..7 {
        finished_turn(&gw, "bob", "conv", &format!("p{i}"), 2).await;
    }
    stored(&gw, "conv", 7).await;
    let user = token("bob", None);
    let (_, first) = gw.get_json("/v1/conversations/conv/turns?limit=3", &user).await;
    let ids = |p: &Value| -> Vec<String> {
        p["turns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["turn_id"].as_str().unwrap().into())
            .collect()
    };
    assert_eq!(ids(&first), ["p6", "p5", "p4"], "newest first");
    let next = first["next"].as_str().unwrap();
    // A turn ending between two page requests does not shift the pages.
    finished_turn(&gw, "bob", "conv", "p7", 1).await;
    stored(&gw, "conv", 8).await;
    let (_, second) =
        gw.get_json(&format!("/v1/conversations/conv/turns?limit=3&before={next}"), &user).await;
    assert_eq!(ids(&second), ["p3", "p2", "p1"]);
    let next = second["next"].as_str().unwrap();
    let (_, third) =
        gw.get_json(&format!("/v1/conversations/conv/turns?limit=3&before={next}"), &user).await;
    assert_eq!(ids(&third), ["p0"]);
    assert!(third["next"].is_null());

    let del = |t: String| {
        let http = gw.http.clone();
        let url = gw.url("/v1/conversations/conv");
        async move {
            let r = http.delete(url).bearer_auth(t).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, e) = del(token("mallory", None)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("conversation_not_found")));
    let (s, b) = del(token("bob", None)).await;
    assert_eq!((s, b["deleted"].as_u64()), (200, Some(8)));
    let (_, page) = history(&gw, "conv", &user).await;
    assert!(page["turns"].as_array().unwrap().is_empty());
    let (s, _) = gw.get_json("/v1/turns/p3/traces", &user).await;
    assert_eq!(s, 404, "traces go with their turns");
}

#[tokio::test]
async fn a_turn_longer_than_the_limit_is_stored_cut_and_flagged_and_4_mib_is_intact() {
    let mib = 1 << 20;
    let gw = TestGateway::start(&[
        ("GATEWAY_STORE_MAX_TEXT_BYTES", &(4 * mib + 2).to_string()),
        ("GATEWAY_MAX_NDJSON_LINE_BYTES", &(2 * mib).to_string()),
    ]);
    // 4 MiB of two-byte characters, in 1 MiB deltas.
    let piece = "é".repeat(mib / 2);
    for (turn, n) in [("exact", 4), ("over", 5)] {
        gw.create_turn("u", "big", turn).await;
        let mut items: Vec<Value> = (0..n).map(|_| json!({"delta": piece})).collect();
        items.push(end_item());
        assert_eq!(gw.send_items(turn, &items).await.0, 200);
    }
    let turns = stored(&gw, "big", 2).await;
    let get = |id: &str| turns.iter().find(|t| t["turn_id"] == id).unwrap();
    let exact = get("exact");
    assert_eq!(exact["text"].as_str().unwrap().len(), 4 * mib);
    assert!(exact["text"].as_str().unwrap().chars().all(|c| c == 'é'), "intact");
    assert_eq!(exact["truncated"], false);
    let over = get("over");
    assert_eq!(over["text"].as_str().unwrap().len(), 4 * mib + 2, "cut at the limit");
    assert_eq!(over["truncated"], true, "flagged, never dropped");
    let (_, state) = gw.get_json("/v1/turns/over", &producer_token()).await;
    assert_eq!(state["text_len"], 5 * mib as u64 / 2, "the stream itself is not cut");
}

/// PostgreSQL in a schema of the test's own, behind a proxy the test switches.
struct Pg {
    proxy: common::pg::proxy::Proxy,
    url: String,
    schema: String,
    _drop: DropSchema,
}

async fn pg() -> Pg {
    let url = database_url();
    let schema = unique("gwe2e");
    let (proxy, via) = proxied(&url).await;
    Pg { proxy, url: via, _drop: DropSchema { url, schema: schema.clone() }, schema }
}

fn pg_env(pg: &Pg) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_STORE_URL", pg.url.clone()),
        ("GATEWAY_STORE_SCHEMA", pg.schema.clone()),
        ("GATEWAY_OUTBOX_RETRY_BASE_MS", "50".into()),
        ("GATEWAY_OUTBOX_RETRY_MAX_MS", "300".into()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// The proxy's tasks must run while the harness blocks (on the child's stdout, its exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_that_end_while_postgres_is_down_are_stored_exactly_once_when_it_is_back() {
    let pg = pg().await;
    let env = pg_env(&pg);
    let gw = TestGateway::start(&env_refs(&env));
    finished_turn(&gw, "carol", "pgc", "before", 3).await;
    stored(&gw, "pgc", 1).await;

    pg.proxy.set_up(false);
    let mut ws = gw.device("carol", "").await;
    let mut texts = Vec::new();
    for i in 0..5 {
        texts.push(finished_turn(&gw, "carol", "pgc", &format!("down{i}"), 10).await);
    }
    // Streaming went on: the device saw every turn end.
    for i in 0..5 {
        ws.until_end(&format!("down{i}")).await;
    }
    let (s, ready) = gw.get_json("/readyz", "").await;
    assert_eq!(s, 200, "a store outage does not stop streaming: {ready}");
    assert_eq!(ready["store"]["reachable"], false);
    assert_eq!(ready["store"]["outbox"]["backlog"], 5);
    let (s, e) = history(&gw, "pgc", &token("carol", None)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("store_unavailable")));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(gw.metric("gateway_outbox_depth").await, 5.0);
    assert!(gw.metric("gateway_store_retries_total").await >= 5.0);

    pg.proxy.set_up(true);
    let turns = stored(&gw, "pgc", 6).await;
    for (i, text) in texts.iter().enumerate() {
        let t = turns.iter().find(|t| t["turn_id"] == format!("down{i}").as_str()).unwrap();
        assert_eq!(t["text"], text.as_str());
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, ready) = gw.get_json("/readyz", "").await;
        assert_eq!(ready["store"]["reachable"], true);
        if ready["store"]["outbox"]["backlog"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the outbox empties: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// The proxy's tasks must run while the harness blocks (on the child's stdout, its exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_waiting_in_the_outbox_are_stored_after_a_crash_and_restart() {
    let pg = pg().await;
    let env = pg_env(&pg);
    let dir = temp_dir("gw-restart");
    pg.proxy.set_up(false);
    let mut first = TestGateway::start_in(&dir, &env_refs(&env));
    first.keep_data = true;
    for i in 0..3 {
        finished_turn(&first, "dave", "rc", &format!("r{i}"), 5).await;
    }
    let (_, ready) = first.get_json("/readyz", "").await;
    assert_eq!(ready["store"]["outbox"]["backlog"], 3);
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(first);

    pg.proxy.set_up(true);
    let second = TestGateway::start_in(&dir, &env_refs(&env));
    let turns = stored(&second, "rc", 3).await;
    assert_eq!(turns.len(), 3);
    // And a clean stop flushes what just ended before exiting.
    finished_turn(&second, "dave", "rc", "last", 2).await;
    second.signal("TERM");
    let mut second = second;
    assert!(second.wait_exit(Duration::from_secs(15)).expect("drained").success());
    let third = TestGateway::start_in(&dir, &env_refs(&env));
    let (_, ready) = third.get_json("/readyz", "").await;
    assert_eq!(ready["store"]["outbox"]["backlog"], 0, "flushed before the exit: {ready}");
    stored(&third, "rc", 4).await;
}

#[tokio::test]
async fn retention_purges_old_turns_in_the_background() {
    let gw = TestGateway::start(&[("GATEWAY_STORE_RETENTION_MS", "1500")]);
    finished_turn(&gw, "erin", "old", "o1", 2).await;
    stored(&gw, "old", 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, page) = history(&gw, "old", &token("erin", None)).await;
        if page["turns"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not purged: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the embedded store a finished turn is stored at once, then forgotten as an open turn
/// without a sync, so a crash between the two leaves it noted open. The next start must find
/// it stored and forget it: not end it `failed` a second time (a `turn.end` in the new log, and
/// a conflicting copy set aside).
#[tokio::test]
async fn a_stored_turn_still_noted_open_after_a_crash_is_not_ended_again() {
    let dir = temp_dir("gw-direct");
    let mut first = TestGateway::start_in(&dir, &[]);
    first.keep_data = true;
    let text = finished_turn(&first, "olga", "cdirect", "tdirect", 3).await;
    assert_eq!(stored(&first, "cdirect", 1).await[0]["text"], text);
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(first);
    // What the crash leaves: the stored turn still noted as open.
    let outbox = store_client::EmbeddedOutbox::open(&dir).await.unwrap();
    let open = store_client::TurnRecord {
        turn_id: "tdirect".into(),
        conversation_id: "cdirect".into(),
        user_id: "olga".into(),
        status: wire::TurnStatus::Completed,
        text: String::new(),
        truncated: false,
        created_at_ms: 1,
        completed_at_ms: 0,
        meta: Value::Null,
    };
    outbox.open_turn(&open).await.unwrap();
    drop(outbox);

    for _ in 0..2 {
        let mut gw = TestGateway::start_in(&dir, &[]);
        gw.keep_data = true;
        let (_, seq, _) = gw.ws("olga", "").await.hello().await;
        assert_eq!(seq, 0, "nothing announced in the new log");
        let turns = stored(&gw, "cdirect", 1).await;
        assert_eq!(
            (turns[0]["status"].as_str(), &turns[0]["text"]),
            (Some("completed"), &json!(text))
        );
        let (s, ready) = gw.get_json("/readyz", "").await;
        assert_eq!((s, ready["store"]["outbox"]["set_aside"].as_u64()), (200, Some(0)), "{ready}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With the embedded store a turn is stored before its `turn.end` is published: a device that
/// reads history as soon as it sees the end finds the turn there, without retrying.
#[tokio::test]
async fn with_the_embedded_store_history_has_the_turn_when_its_end_arrives() {
    let gw = TestGateway::start(&[]);
    let mut device = gw.device("una", "").await;
    for n in 0..5 {
        let turn_id = format!("tat{n}");
        let text = finished_turn(&gw, "una", "cat", &turn_id, 3).await;
        let events = device.until_end(&turn_id).await;
        assert!(matches!(events.last().map(|e| &e.body), Some(wire::EventBody::TurnEnd { .. })));
        let (s, page) = history(&gw, "cat", &token("una", None)).await;
        assert_eq!(s, 200, "{page}");
        assert_eq!(page["turns"].as_array().map(Vec::len), Some(n + 1), "{page}");
        assert_eq!(page["turns"][0]["text"], text, "{page}");
    }
}
