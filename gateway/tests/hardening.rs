//! Regressions of the adversarial run (issue "Hardening"), each on the real binary: deletes
//! scoped to their user, any text stored on PostgreSQL, ids with control characters refused,
//! CORS for browsers on an allowed origin, headers on every API answer, the set-aside admin API.

mod common;

use std::time::Duration;

use common::pg::{DropSchema, database_url, unique};
use common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn finish(gw: &TestGateway, user: &str, conv: &str, turn_id: &str) {
    assert_eq!(gw.create_turn(user, conv, turn_id).await.0, 201);
    let (s, b) = gw.send_items(turn_id, &[json!({"delta": turn_id}), end_item()]).await;
    assert_eq!(s, 200, "{b}");
}

async fn delete(gw: &TestGateway, conv: &str, token: &str) -> (u16, Value) {
    let r = gw.http.delete(gw.url(&format!("/v1/conversations/{conv}"))).bearer_auth(token);
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn deleting_a_conversation_takes_only_the_callers_turns() {
    let gw = TestGateway::start(&[]);
    finish(&gw, "alice", "shared", "a1").await;
    finish(&gw, "bob", "shared", "b1").await;
    stored(&gw, "shared", 2).await;
    // Alice's turn in flight when Bob (owner of the newest turn) deletes.
    assert_eq!(gw.create_turn("alice", "shared", "a2").await.0, 201);
    let (s, b) = delete(&gw, "shared", &token("bob", None)).await;
    assert_eq!((s, b["deleted"].as_u64()), (200, Some(1)), "{b}");
    let (s, _) = gw.send_items("a2", &[json!({"delta": "still mine"}), end_item()]).await;
    assert_eq!(s, 200);
    let left = stored(&gw, "shared", 2).await;
    let ids: Vec<&str> = left.iter().map(|t| t["turn_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a2", "a1"], "alice's turns, stored and in flight, survive bob's delete");
    let (s, _) = delete(&gw, "shared", &token("bob", None)).await;
    assert_eq!(s, 404, "bob has nothing left there");
    let (s, b) = delete(&gw, "shared", &token("ops", Some("gateway.admin"))).await;
    assert_eq!((s, b["deleted"].as_u64()), (200, Some(2)), "an operator deletes everyone's");
}

#[tokio::test]
async fn ids_with_control_characters_or_bad_utf8_are_a_json_400() {
    let gw = TestGateway::start(&[]);
    let admin = token("ops", Some("gateway.admin"));
    for path in [
        "/v1/turns/a%00b",
        "/v1/turns/%FF%FE",
        "/v1/conversations/c%0A/turns",
        "/v1/users/u%01/presence",
    ] {
        let r = gw.http.get(gw.url(path)).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let b: Value = r.json().await.unwrap();
        assert!(b["error"]["code"].is_string(), "{path}: {b}");
    }
    let body = json!({"user_id": "u\u{0}", "conversation_id": "c", "turn_id": "t"});
    assert_eq!(gw.post_json("/v1/turns", &producer_token(), &body).await.0, 400);
    let body = json!({"user_id": "u", "conversation_id": "c\u{0}"});
    assert_eq!(gw.post_json("/v1/turns", &producer_token(), &body).await.0, 400);
}

#[tokio::test]
async fn browsers_on_an_allowed_origin_get_cors_and_every_answer_is_no_store_nosniff() {
    let gw = TestGateway::start(&[("GATEWAY_ALLOWED_ORIGINS", "https://app.example")]);
    let pre = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.url("/v1/conversations/c/turns"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "authorization, content-type, last-event-id")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "preflight: {}", pre.status());
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let methods = h["access-control-allow-methods"].to_str().unwrap().to_owned();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for want in ["authorization", "content-type", "last-event-id"] {
        assert!(allowed.contains(want), "{allowed}");
    }
    let sse = gw
        .http
        .get(gw.url(&format!("/v1/sse?access_token={}", token("u", None))))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["access-control-allow-origin"], "https://app.example");
    drop(sse);
    let other = gw
        .http
        .get(gw.url("/v1/conversations/c/turns"))
        .bearer_auth(token("u", None))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    for (path, auth) in
        [("/v1/conversations/c/turns", true), ("/v1/turns/nope", true), ("/v1/nothing", false)]
    {
        let mut r = gw.http.get(gw.url(path));
        if auth {
            r = r.bearer_auth(token("u", None));
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }
}

/// PostgreSQL in a schema of the test's own, reached directly.
async fn pg_gateway() -> (TestGateway, String, DropSchema) {
    let url = database_url();
    let schema = unique("gwhard");
    let gw = TestGateway::start(&[
        ("GATEWAY_STORE_URL", url.as_str()),
        ("GATEWAY_STORE_SCHEMA", schema.as_str()),
        ("GATEWAY_OUTBOX_RETRY_BASE_MS", "50"),
        ("GATEWAY_OUTBOX_RETRY_MAX_MS", "300"),
    ]);
    (gw, schema.clone(), DropSchema { url, schema })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_with_nul_is_stored_on_postgresql_and_read_back_the_same() {
    let (gw, _schema, _drop) = pg_gateway().await;
    assert_eq!(gw.create_turn("nul", "cnul", "tnul").await.0, 201);
    let parts = ["a\u{0}b", "\u{0}", "\\u0000 as text", "end\u{1}"];
    let mut items: Vec<Value> = parts.iter().map(|p| json!({"delta": p})).collect();
    items.push(json!({"trace": {"kind": "tool_result", "data": {"out": "x\u{0}y"}}}));
    items.push(end_item());
    assert_eq!(gw.send_items("tnul", &items).await.0, 200);
    let turns = stored(&gw, "cnul", 1).await;
    assert_eq!(turns[0]["text"], parts.concat());
    let (s, traces) = gw.get_json("/v1/turns/tnul/traces", &token("nul", None)).await;
    assert_eq!(s, 200);
    assert_eq!(traces["traces"][0]["data"]["out"], "x\u{0}y");
    let (s, ready) = gw.get_json("/readyz", "").await;
    assert_eq!((s, ready["store"]["outbox"]["set_aside"].as_u64()), (200, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_set_aside_turns_and_put_them_back_in_line() {
    let (gw, schema, _drop) = pg_gateway().await;
    // Another turn with this id and other content is stored already: a refusal for good.
    let url = database_url();
    let store = store_client::PostgresStore::connect_in_schema(&url, Some(&schema));
    let store = store.await.unwrap();
    use store_client::TurnStore;
    store.put(&store_client::contract::turn("tconf", "cconf", "dora", 1)).await.unwrap();
    finish(&gw, "dora", "cconf", "tconf").await;
    let admin = token("ops", Some("gateway.admin"));
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let (s, b) = gw.get_json("/v1/admin/outbox/set-aside", &admin).await;
        assert_eq!(s, 200, "{b}");
        if b["entries"].as_array().is_some_and(|e| !e.is_empty()) {
            break b;
        }
        assert!(tokio::time::Instant::now() < deadline, "never set aside: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed["entries"][0]["turn_id"], "tconf");
    assert_eq!(listed["entries"][0]["user_id"], "dora");
    let (s, _) = gw.get_json("/v1/admin/outbox/set-aside", &token("dora", None)).await;
    assert_eq!(s, 403, "operators only");
    // The operator mends the cause (the other row goes), then retries.
    let mut conn =
        <sqlx::PgConnection as sqlx::Connection>::connect(&database_url()).await.unwrap();
    let sql = format!("DELETE FROM {schema}.turns WHERE turn_id = 'tconf'");
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    let (s, b) =
        gw.post_json("/v1/admin/outbox/set-aside/retry", &admin, &json!({"all": true})).await;
    assert_eq!((s, b["retried"].as_u64()), (200, Some(1)), "{b}");
    let turns = stored(&gw, "cconf", 1).await;
    assert_eq!(turns[0]["text"], "tconf", "the gateway's own turn, stored after the retry");
    let (s, _) = gw.post_json("/v1/admin/outbox/set-aside/retry", &admin, &json!({})).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn publishing_client_frames_are_rate_limited_per_connection() {
    let gw = TestGateway::start(&[("GATEWAY_CLIENT_PUBLISH_PER_SEC", "5")]);
    let mut ws = gw.device("chatty", "").await;
    for i in 0..30 {
        ws.send_json(json!({"type": "notification.read", "id": format!("n{i}"), "ref": i})).await;
    }
    let t = tally(&mut ws).await;
    assert_eq!(t.events + t.limited, 30);
    let published = t.events as u64;
    assert!((10..=12).contains(&published), "a burst of 10, then 5/s: {published} published");
    let mut other = gw.device("chatty", "").await;
    other.send_json(json!({"type": "notification.read", "id": "fresh"})).await;
    assert_eq!(other.event().await.seq, published + 1, "the limit is per connection");
    // `notification.mark` publishes too, so it draws on the same bucket (9 tokens are left).
    for i in 0..20 {
        let mark = json!({"type": "notification.mark", "all": true, "status": "seen", "ref": i});
        other.send_json(mark).await;
    }
    let t = tally(&mut other).await;
    assert_eq!(t.marked + t.limited, 20);
    assert!((9..=12).contains(&t.marked), "marks share the bucket: {} answered", t.marked);
}

/// What a connection received in answer to a run of frames.
struct Tally {
    events: usize,
    marked: usize,
    limited: usize,
}

/// Sends a `ping` and counts what arrives before its `pong`; only `rate_limited` errors may.
async fn tally(ws: &mut WsClient) -> Tally {
    ws.send_json(json!({"type": "ping"})).await;
    let mut t = Tally { events: 0, marked: 0, limited: 0 };
    loop {
        match ws.frame().await {
            wire::ServerFrame::Event(_) => t.events += 1,
            wire::ServerFrame::Control(wire::ControlFrame::NotificationMarked { .. }) => {
                t.marked += 1
            }
            wire::ServerFrame::Control(wire::ControlFrame::Error { code, .. }) => {
                assert_eq!(code, "rate_limited");
                t.limited += 1;
            }
            wire::ServerFrame::Control(wire::ControlFrame::Pong { .. }) => return t,
            other => panic!("{other:?}"),
        }
    }
}

/// `kill -9` mid-turn in embedded mode: after the restart the turn is ended `failed`
/// (`gateway_restarted`) with the text of its last checkpoint, stored once, and known to the
/// producer (409), to `GET /v1/turns/{id}` and to `turn.sync`.
#[tokio::test]
async fn a_turn_cut_by_kill_9_is_ended_failed_and_stored_after_the_restart() {
    let dir = temp_dir("gw-kill");
    let mut first = TestGateway::start_in(&dir, &[]);
    first.keep_data = true;
    assert_eq!(first.create_turn("kim", "ckill", "tkill").await.0, 201);
    let (s, _) = first
        .send_items("tkill", &[json!({"delta": "before "}), json!({"delta": "the crash"})])
        .await;
    assert_eq!(s, 200);
    // The sweep checkpoints the text every 5 s.
    tokio::time::sleep(Duration::from_millis(5_600)).await;
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).expect("killed");
    drop(first);

    let mut gw = TestGateway::start_in(&dir, &[]);
    gw.keep_data = true;
    let (s, t) = gw.get_json("/v1/turns/tkill", &producer_token()).await;
    assert_eq!(
        (s, t["status"].as_str(), t["next_index"].as_u64()),
        (200, Some("failed"), Some(2)),
        "{t}"
    );
    let (s, b) = gw.send_items("tkill", &[json!({"delta": "after"})]).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("turn_ended")), "{b}");
    let turns = stored(&gw, "ckill", 1).await;
    assert_eq!(
        (turns[0]["status"].as_str(), turns[0]["text"].as_str()),
        (Some("failed"), Some("before the crash"))
    );
    let mut ws = gw.device("kim", "").await;
    ws.send_json(json!({"type": "turn.sync", "turn_id": "tkill"})).await;
    match ws.control().await {
        wire::ControlFrame::TurnSnapshot { status, text, .. } => {
            assert_eq!((status, text.as_str()), (wire::TurnStatus::Failed, "before the crash"));
        }
        other => panic!("{other:?}"),
    }
    // The restart ended it once: a second restart changes nothing.
    drop(gw);
    let again = TestGateway::start_in(&dir, &[]);
    assert_eq!(stored(&again, "ckill", 1).await.len(), 1);
}
