//! PROTOCOL.md v1.1 additions that stand on the v1 core: `GET /v1/turns/{id}?snapshot=true`,
//! the `critical` priority, the notification's `disposition`.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_turn_snapshot_over_http_lets_an_sse_client_join_mid_stream() {
    let gw = TestGateway::start(&[]);
    assert_eq!(gw.create_turn("sam", "c", "ts").await.0, 201);
    let (s, _) = gw.send_items("ts", &[json!({"delta": "Hel"}), json!({"delta": "lo"})]).await;
    assert_eq!(s, 200);
    let user = token("sam", None);
    let (s, snap) = gw.get_json("/v1/turns/ts?snapshot=true", &user).await;
    assert_eq!(s, 200, "{snap}");
    assert_eq!(
        (snap["text"].as_str(), snap["next_index"].as_u64(), snap["status"].as_str()),
        (Some("Hello"), Some(2), Some("streaming"))
    );
    assert_eq!(snap["as_of_seq"], 3, "turn.start and two deltas");
    assert_eq!((snap["turn_id"].as_str(), snap["text_len"].as_u64()), (Some("ts"), Some(5)));
    // An SSE client joining now resumes after `as_of_seq` and continues the text.
    let mut sse = gw.sse("sam", "", None).await;
    sse.hello().await;
    gw.send_items("ts", &[json!({"delta": "!"}), end_item()]).await;
    let next = sse.event().await;
    let v: serde_json::Value = serde_json::from_str(&next.data).unwrap();
    assert_eq!((v["index"].as_u64(), v["seq"].as_u64()), (Some(2), Some(4)));
    let (_, plain) = gw.get_json("/v1/turns/ts", &user).await;
    assert!(plain.get("text").is_none(), "without the flag, the v1 body");
    let (s, _) = gw.get_json("/v1/turns/ts?snapshot=maybe", &user).await;
    assert_eq!(s, 400);
    let (s, _) = gw.get_json("/v1/turns/ts?snapshot=true", &token("eve", None)).await;
    assert_eq!(s, 404, "another user's turn is not found");
}

#[tokio::test]
async fn notifications_take_critical_and_answer_their_disposition() {
    let gw = TestGateway::start(&[]);
    let mut ws = gw.device("nina", "").await;
    let body = json!({"user_id": "nina", "category": "security", "priority": "critical",
        "title": "t", "body": "b", "dedup_key": "k"});
    let (s, first) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!(
        (s, first["disposition"].as_str(), first["seq"].as_u64()),
        (202, Some("delivered"), Some(1))
    );
    let e = ws.event().await;
    assert!(matches!(
        e.body,
        wire::EventBody::Notification { priority: wire::Priority::Critical, .. }
    ));
    let (_, again) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!(
        (again["id"].clone(), again["seq"].clone()),
        (first["id"].clone(), serde_json::Value::Null)
    );
    let bad = json!({"user_id": "nina", "category": "c", "priority": "urgent", "title": "t", "body": "b"});
    assert_eq!(gw.post_json("/v1/notifications", &producer_token(), &bad).await.0, 400);
}
