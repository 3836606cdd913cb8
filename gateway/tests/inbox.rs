//! PROTOCOL.md v1.1, §Notifications, the inbox on the real binary: every notification kept
//! beyond the log's retention and paged newest first, the two counts, and marks (HTTP and the
//! client frame) reaching every device of the user as one `notification.state` event.

mod common;

use common::*;
use serde_json::{Value, json};
use wire::api::MarkStatus;
use wire::{ControlFrame, EventBody};

async fn send(gw: &TestGateway, user: &str, category: &str, title: &str) -> Value {
    let body = json!({"user_id": user, "category": category, "title": title, "body": "b", "data": {"n": title}});
    let (s, reply) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
    assert_eq!(s, 202, "{reply}");
    reply
}

async fn inbox(gw: &TestGateway, user: &str, query: &str) -> Value {
    let (s, page) =
        gw.get_json(&format!("/v1/users/{user}/notifications?{query}"), &token(user, None)).await;
    assert_eq!(s, 200, "{page}");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_keeps_what_the_log_trimmed_and_pages_newest_first() {
    let gw = TestGateway::start(&[("GATEWAY_LOG_RETENTION", "5")]);
    let prefs =
        json!({"categories": {"quiet": {"min_priority": "high"}, "off": {"enabled": false}}});
    let r = gw
        .http
        .put(gw.url("/v1/users/ia/preferences"))
        .bearer_auth(token("ia", None))
        .json(&prefs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut ids = Vec::new();
    for i in 0..30 {
        let category = ["news", "quiet", "off"][i % 3];
        ids.push(
            send(&gw, "ia", category, &format!("n{i}")).await["id"].as_str().unwrap().to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut query = "limit=7".to_owned();
    loop {
        let page = inbox(&gw, "ia", &query).await;
        for n in page["notifications"].as_array().unwrap() {
            seen.push(n["id"].as_str().unwrap().to_owned());
            assert_eq!(n["data"]["n"], n["title"]);
        }
        assert_eq!(
            (page["unread_count"].as_u64(), page["unseen_count"].as_u64()),
            (Some(20), Some(20)),
            "suppressed ones are archived"
        );
        match page["next"].as_str() {
            Some(next) => query = format!("limit=7&before={next}"),
            None => break,
        }
    }
    let listed: Vec<_> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(_, id)| id.clone())
        .rev()
        .collect();
    assert_eq!(seen, listed, "everything not archived, newest first, none twice, past the log's 5");
    let archived = inbox(&gw, "ia", "status=archived").await;
    assert_eq!(archived["notifications"].as_array().unwrap().len(), 10);
    assert_eq!(archived["notifications"][0]["disposition"], "suppressed");
    let held = inbox(&gw, "ia", "category=quiet&limit=200").await;
    assert_eq!(held["notifications"].as_array().unwrap().len(), 10);
    assert_eq!(held["notifications"][0]["disposition"], "held");
    let (s, _) = gw.get_json("/v1/users/ia/notifications", &token("other", None)).await;
    assert_eq!(s, 403);
    let (s, _) = gw.get_json("/v1/users/ia/notifications?status=new", &token("ia", None)).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marks_reach_every_device_with_both_counts() {
    let gw = TestGateway::start(&[]);
    let (mut phone, mut laptop) = (gw.ws("ib", "").await, gw.ws("ib", "").await);
    phone.hello().await;
    laptop.hello().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(send(&gw, "ib", "c", &format!("m{i}")).await["id"].as_str().unwrap().to_owned());
    }
    for device in [&mut phone, &mut laptop] {
        for i in 0..4u64 {
            match device.event().await.body {
                EventBody::Notification { unread_count, .. } => {
                    assert_eq!(unread_count, Some(i + 1))
                }
                other => panic!("{other:?}"),
            }
        }
    }
    let mark = json!({"ids": [ids[0], ids[1], "unknown"], "status": "read"});
    let (s, reply) =
        gw.post_json("/v1/users/ib/notifications/mark", &token("ib", None), &mark).await;
    assert_eq!(s, 200, "{reply}");
    assert_eq!(reply, json!({"updated": 2, "unread_count": 2, "unseen_count": 2}));
    for device in [&mut phone, &mut laptop] {
        match device.event().await.body {
            EventBody::NotificationState {
                ids: Some(marked),
                status,
                unread_count,
                unseen_count,
                ..
            } => {
                assert_eq!(
                    (marked.len(), status, unread_count, unseen_count),
                    (3, MarkStatus::Read, 2, 2)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // The client frame: everything seen; the sender gets the reply, then (as every device)
    // the event.
    phone
        .send_json(json!({"type": "notification.mark", "all": true, "status": "seen", "ref": 7}))
        .await;
    match phone.frame().await {
        wire::ServerFrame::Control(ControlFrame::NotificationMarked {
            updated,
            unseen_count,
            reference,
            ..
        }) => assert_eq!((updated, unseen_count, reference), (2, 0, Some(json!(7)))),
        other => panic!("the reply comes first: {other:?}"),
    }
    let state = Some(phone.event().await.body);
    assert!(matches!(
        state,
        Some(EventBody::NotificationState { all: Some(true), unseen_count: 0, .. })
    ));
    assert!(matches!(
        laptop.event().await.body,
        EventBody::NotificationState { all: Some(true), .. }
    ));
    // The v1 read frame marks the inbox too.
    laptop.send_json(json!({"type": "notification.read", "id": ids[3]})).await;
    assert!(matches!(phone.event().await.body, EventBody::NotificationRead { .. }));
    assert_eq!(inbox(&gw, "ib", "").await["unread_count"], 1);
    assert_eq!(gw.metric("gateway_notification_marks_total").await, 2.0);
    let (s, bad) = gw
        .post_json(
            "/v1/users/ib/notifications/mark",
            &token("ib", None),
            &json!({"status": "read"}),
        )
        .await;
    assert_eq!((s, bad["error"]["code"].as_str()), (400, Some("invalid_request")));
    let (s, _) = gw.post_json("/v1/users/ib/notifications/mark", &token("x", None), &mark).await;
    assert_eq!(s, 403);
}
