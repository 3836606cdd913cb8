//! Fan-out, ordering and resume, through real WebSocket and SSE clients.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use wire::{ControlFrame, EventBody, LogEvent, TurnStatus};

/// The text of a turn's deltas, checking their indexes run 0, 1, 2, … with no gap.
fn text_of(events: &[LogEvent], turn_id: &str) -> String {
    let mut text = String::new();
    let mut next = 0;
    for e in events {
        if let EventBody::TurnDelta { turn_id: t, index, text: piece } = &e.body {
            assert_eq!(t, turn_id);
            assert_eq!(*index, next, "delta indexes in order");
            next += 1;
            text.push_str(piece);
        }
    }
    text
}

#[tokio::test]
async fn three_endpoints_of_one_user_get_the_turn_identically_and_another_user_nothing() {
    let gw = TestGateway::start(&[]);
    let mut phone = gw.ws("alice", "device_id=phone&surface=ios").await;
    let mut laptop = gw.ws("alice", "device_id=laptop&surface=web").await;
    let mut teams = gw.sse("alice", "device_id=teams&surface=teams", None).await;
    let mut bob = gw.ws("bob", "").await;
    let (epoch, _, _) = phone.hello().await;
    laptop.hello().await;
    let hello = teams.hello().await;
    assert_eq!(hello["epoch"], epoch.as_str(), "one log, one epoch for every endpoint");
    bob.hello().await;

    let (status, created) = gw.create_turn("alice", "conv1", "turn-200").await;
    assert_eq!(status, 201, "{created}");
    let (items, text) = deltas(200, "w");
    let mut all = items;
    all.push(end_item());
    let (status, body) = gw.send_items("turn-200", &all).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 201);

    let a = phone.until_end("turn-200").await;
    let b = laptop.until_end("turn-200").await;
    let mut c = Vec::new();
    loop {
        let e = teams.event().await;
        let ev: LogEvent = serde_json::from_str(&e.data).unwrap();
        assert_eq!(e.id.as_deref(), Some(format!("{epoch}:{}", ev.seq).as_str()));
        assert_eq!(e.event, ev.body.kind());
        let end = matches!(ev.body, EventBody::TurnEnd { .. });
        c.push(ev);
        if end {
            break;
        }
    }
    assert_eq!(a.len(), 202, "turn.start + 200 deltas + turn.end");
    assert_contiguous(&a, 1);
    assert_eq!(a, b, "both WebSockets saw the same events");
    assert_eq!(a, c, "the SSE surface saw the same events");
    assert_eq!(text_of(&a, "turn-200"), text);

    // Bob got nothing: the next thing he sees is his own notification.
    gw.notify("bob", "for bob", None).await;
    let e = bob.event().await;
    assert_eq!(e.seq, 1);
    assert!(matches!(e.body, EventBody::Notification { ref title, .. } if title == "for bob"));
}

#[tokio::test]
async fn a_websocket_that_drops_mid_turn_resumes_with_exactly_the_missed_events() {
    let gw = TestGateway::start(&[]);
    let mut ws = gw.ws("u", "device_id=d1").await;
    let (epoch, _, _) = ws.hello().await;
    gw.create_turn("u", "c", "t1").await;
    let (first, text1) = deltas(100, "a");
    gw.send_items("t1", &first).await;
    let mut seen = Vec::new();
    for _ in 0..60 {
        seen.push(ws.event().await);
    }
    let last = seen.last().unwrap().seq;
    drop(ws); // gone without a goodbye, 41 events unread

    let (mut second, text2) = deltas(100, "b");
    second.push(end_item());
    gw.send_items("t1", &second).await;

    let mut ws = gw.ws("u", &format!("device_id=d1&epoch={epoch}&after={last}")).await;
    let (e2, head, resumed) = ws.hello().await;
    assert!(resumed);
    assert_eq!(e2, epoch);
    assert_eq!(head, 202);
    let rest = ws.until_end("t1").await;
    assert_contiguous(&rest, last + 1);
    seen.extend(rest);
    assert_contiguous(&seen, 1);
    assert_eq!(text_of(&seen, "t1"), format!("{text1}{text2}"));
    assert_eq!(gw.metric("gateway_resume_total{result=\"hit\"}").await, 1.0);
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_header_and_query() {
    let gw = TestGateway::start(&[]);
    let mut sse = gw.sse("u", "", None).await;
    let hello = sse.hello().await;
    for i in 0..5 {
        gw.notify("u", &format!("n{i}"), None).await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(sse.event().await.id.unwrap());
    }
    drop(sse);
    let epoch = hello["epoch"].as_str().unwrap();
    assert_eq!(ids[2], format!("{epoch}:3"));

    let mut again = gw.sse("u", "", Some(&ids[2])).await;
    let h = again.hello().await;
    assert_eq!(h["resumed"], true);
    assert_eq!(again.event().await.id.unwrap(), format!("{epoch}:4"));
    assert_eq!(again.event().await.id.unwrap(), format!("{epoch}:5"));

    // The header wins over the query parameter.
    let mut q = gw.sse("u", &format!("last_event_id={epoch}:1"), Some(&format!("{epoch}:4"))).await;
    assert_eq!(q.hello().await["resumed"], true);
    assert_eq!(q.event().await.id.unwrap(), format!("{epoch}:5"));
    let mut q = gw.sse("u", &format!("last_event_id={epoch}:1"), None).await;
    q.hello().await;
    assert_eq!(q.event().await.id.unwrap(), format!("{epoch}:2"));
}

#[tokio::test]
async fn resumed_is_false_once_the_log_no_longer_holds_the_events() {
    let gw = TestGateway::start(&[("GATEWAY_LOG_RETENTION", "5")]);
    let mut ws = gw.ws("u", "").await;
    let (epoch, _, _) = ws.hello().await;
    for i in 0..20 {
        gw.notify("u", &format!("n{i}"), None).await;
    }
    drop(ws);
    let mut ws = gw.ws("u", &format!("epoch={epoch}&after=2")).await;
    let (_, head, resumed) = ws.hello().await;
    assert!(!resumed, "seq 3..15 were trimmed");
    assert_eq!(head, 20);
    let mut ws2 = gw.ws("u", &format!("epoch={epoch}&after=15")).await;
    assert_eq!(ws2.hello().await, (epoch.clone(), 20, true), "16..20 still held");
    assert_eq!(ws2.event().await.seq, 16);
    let mut other_epoch = gw.ws("u", "epoch=not-this-one&after=19").await;
    assert!(!other_epoch.hello().await.2);
    let mut half = gw.ws("u", "after=19").await;
    assert!(!half.hello().await.2, "resuming needs both epoch and seq");
    // Nothing is replayed after resumed:false: the next frame is live.
    gw.notify("u", "live", None).await;
    assert_eq!(ws.event().await.seq, 21);
}

#[tokio::test]
async fn a_device_joining_mid_turn_syncs_and_ends_with_the_exact_text() {
    let gw = TestGateway::start(&[]);
    gw.create_turn("u", "c", "t1").await;
    let (first, text1) = deltas(50, "x");
    gw.send_items("t1", &first).await;

    let mut late = gw.device("u", "device_id=late").await;
    late.send_json(json!({"type": "turn.sync", "turn_id": "t1", "ref": "s1"})).await;
    let (mut text, next_index) = match late.control().await {
        ControlFrame::TurnSnapshot { text, next_index, status, reference, .. } => {
            assert_eq!(status, TurnStatus::Streaming);
            assert_eq!(reference, Some(Value::from("s1")));
            (text, next_index)
        }
        other => panic!("expected a snapshot, got {other:?}"),
    };
    assert_eq!(text, text1);
    assert_eq!(next_index, 50);

    let (mut second, text2) = deltas(50, "y");
    second.push(end_item());
    gw.send_items("t1", &second).await;
    for e in late.until_end("t1").await {
        if let EventBody::TurnDelta { index, text: piece, .. } = e.body
            && index >= next_index
        {
            text.push_str(&piece);
        }
    }
    assert_eq!(text, format!("{text1}{text2}"));
    let (_, state) = gw.get_json("/v1/turns/t1", &producer_token()).await;
    assert_eq!(state["status"], "completed");
    assert_eq!(state["next_index"], 100);
    assert_eq!(state["text_len"], text.chars().count());
}

#[tokio::test]
async fn cancel_from_another_device_ends_the_turn_everywhere_and_the_producer_gets_409() {
    let gw = TestGateway::start(&[]);
    let mut phone = gw.device("u", "").await;
    let mut laptop = gw.device("u", "").await;
    gw.create_turn("u", "c", "t1").await;
    gw.send_items("t1", &deltas(3, "z").0).await;
    laptop.send_json(json!({"type": "turn.cancel", "turn_id": "t1"})).await;
    for ws in [&mut phone, &mut laptop] {
        let events = ws.until_end("t1").await;
        assert!(matches!(
            events.last().unwrap().body,
            EventBody::TurnEnd { status: TurnStatus::Cancelled, .. }
        ));
        assert_eq!(events.len(), 5);
    }
    let (status, body) = gw.send_items("t1", &[json!({"delta": "late"})]).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "turn_ended");
    // Cancelling again, or another user's turn, is an error frame, not a close.
    laptop.send_json(json!({"type": "turn.cancel", "turn_id": "t1", "ref": 2})).await;
    assert!(
        matches!(laptop.control().await, ControlFrame::Error { code, .. } if code == "turn_ended")
    );
    let mut mallory = gw.device("mallory", "").await;
    gw.create_turn("u", "c", "t2").await;
    mallory.send_json(json!({"type": "turn.cancel", "turn_id": "t2"})).await;
    assert!(
        matches!(mallory.control().await, ControlFrame::Error { code, .. } if code == "turn_not_found")
    );
    mallory.send_json(json!({"type": "turn.sync", "turn_id": "t2"})).await;
    assert!(
        matches!(mallory.control().await, ControlFrame::Error { code, .. } if code == "turn_not_found")
    );
}

#[tokio::test]
async fn ndjson_lines_are_published_as_they_arrive_before_the_body_ends() {
    let gw = TestGateway::start(&[]);
    let mut ws = gw.device("u", "").await;
    gw.create_turn("u", "c", "t1").await;
    ws.event().await; // turn.start

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let req = gw
        .http
        .post(gw.url("/v1/turns/t1/events"))
        .bearer_auth(producer_token())
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send();
    let response = tokio::spawn(req);
    for i in 0..10 {
        // Split each line across two writes to check reassembly too.
        let line = format!("{}\n", json!({"delta": format!("tok{i} ")}));
        let (a, b) = line.split_at(line.len() / 2);
        tx.send(Ok(a.to_owned())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        tx.send(Ok(b.to_owned())).await.unwrap();
        let e = ws.event().await;
        assert!(
            matches!(&e.body, EventBody::TurnDelta { index, .. } if *index == i),
            "delta {i} arrived while the body is still open"
        );
        assert!(!response.is_finished());
    }
    tx.send(Ok(format!("{}\n", end_item()))).await.unwrap();
    drop(tx);
    let r = response.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"accepted": 11, "last_seq": 12}));
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn notifications_dedup_and_read_receipts_reach_every_device() {
    let gw = TestGateway::start(&[]);
    let mut a = gw.device("u", "").await;
    let mut b = gw.device("u", "").await;
    let (s1, first) = gw.notify("u", "hello", Some("k1")).await;
    let (s2, again) = gw.notify("u", "hello again", Some("k1")).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["disposition"], "delivered");
    assert_eq!(
        (&again["id"], &again["disposition"], &again["seq"]),
        (&first["id"], &first["disposition"], &serde_json::Value::Null),
        "v1.1: a repeated dedup_key returns the first id and disposition, seq null"
    );
    let (_, other_user) = gw.notify("v", "hello", Some("k1")).await;
    assert_ne!(other_user["id"], first["id"], "dedup keys are per user");
    let id = first["id"].as_str().unwrap().to_owned();

    a.send_json(json!({"type": "notification.read", "id": id})).await;
    for ws in [&mut a, &mut b] {
        let n = ws.event().await;
        assert_eq!(n.seq, 1);
        assert!(matches!(n.body, EventBody::Notification { .. }));
        let r = ws.event().await;
        assert_eq!(r.seq, 2, "the duplicate published nothing");
        assert_eq!(r.body, EventBody::NotificationRead { id: id.clone() });
    }
    assert_eq!(gw.metric("gateway_notifications_deduplicated_total").await, 1.0);
}

#[tokio::test]
async fn turn_creation_is_idempotent_and_conflicts_are_409() {
    let gw = TestGateway::start(&[]);
    let (s, a) = gw.create_turn("u", "c", "t1").await;
    assert_eq!(s, 201);
    let (s, b) = gw.create_turn("u", "c", "t1").await;
    assert_eq!((s, &b), (200, &a));
    let (s, e) = gw.create_turn("u", "other-conv", "t1").await;
    assert_eq!(s, 409);
    assert_eq!(e["error"]["code"], "turn_conflict");
    let (s, e) = gw.create_turn("v", "c", "t1").await;
    assert_eq!(s, 409, "{e}");
    gw.send_items("t1", &[end_item()]).await;
    let (s, _) = gw.create_turn("u", "c", "t1").await;
    assert_eq!(s, 200, "an ended turn stays idempotent");
    let (s, body) = gw.send_items("t1", &[end_item()]).await;
    assert_eq!(s, 409, "a second end is refused: {body}");
    // A fresh id is made when none is given.
    let (s, fresh) = gw
        .post_json("/v1/turns", &producer_token(), &json!({"user_id": "u", "conversation_id": "c"}))
        .await;
    assert_eq!(s, 201);
    assert!(fresh["turn_id"].as_str().unwrap().starts_with("t_"));
}

/// A paced stream (deltas milliseconds apart, as a model produces them) to a user's caught-up
/// WebSockets is written by the publisher itself: the direct path. Checked through its
/// counter, so a change that leaves it unused (every event through a woken task) fails here.
#[tokio::test]
async fn a_paced_stream_goes_to_caught_up_websockets_by_the_direct_path() {
    let gw = TestGateway::start(&[]);
    let mut phone = gw.device("pia", "device_id=phone").await;
    let mut laptop = gw.device("pia", "device_id=laptop").await;
    assert_eq!(gw.create_turn("pia", "c", "paced").await.0, 201);
    let (items, text) = deltas(20, "p");
    for item in items {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(gw.send_items("paced", &[item]).await.0, 200);
    }
    assert_eq!(gw.send_items("paced", &[end_item()]).await.0, 200);
    let a = phone.until_end("paced").await;
    let b = laptop.until_end("paced").await;
    assert_contiguous(&a, 1);
    assert_eq!(a, b);
    assert_eq!(text_of(&a, "paced"), text);
    let direct = gw.metric("gateway_events_written_directly_total").await;
    assert!(direct >= 30.0, "of 44 deliveries, {direct} went by the direct path");
}
