//! Bad input and limits: error frames, 1008, 1009, 4008, 429, 400/409/413 naming the problem.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wire::{ControlFrame, EventBody};

async fn error_code(ws: &mut WsClient) -> String {
    match ws.control().await {
        ControlFrame::Error { code, .. } => code,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_get_error_frames_and_abuse_closes_1008() {
    let gw = TestGateway::start(&[]);
    let mut ws = gw.device("u", "").await;
    ws.send_raw(Message::text("{not json")).await;
    assert_eq!(error_code(&mut ws).await, "malformed_json");
    ws.send_raw(Message::text("[1,2]")).await;
    assert_eq!(error_code(&mut ws).await, "invalid_frame");
    ws.send_json(json!({"type": "teleport", "ref": 7})).await;
    match ws.control().await {
        ControlFrame::Error { code, reference, message } => {
            assert_eq!(code, "unknown_type");
            assert_eq!(reference, Some(Value::from(7)), "ref is echoed");
            assert!(message.contains("teleport"));
        }
        other => panic!("{other:?}"),
    }
    ws.send_json(json!({"type": "turn.sync"})).await;
    assert_eq!(error_code(&mut ws).await, "invalid_frame");
    ws.send_raw(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(error_code(&mut ws).await, "invalid_frame");
    // Still open and working after 5 bad frames.
    ws.send_json(json!({"type": "ping", "ref": "p"})).await;
    assert_eq!(ws.control().await, ControlFrame::Pong { reference: Some("p".into()) });
    ws.send_json(json!({"type": "presence.get"})).await;
    assert!(
        matches!(ws.control().await, ControlFrame::Presence { endpoints, .. } if endpoints.len() == 1)
    );
    for _ in 0..6 {
        ws.send_raw(Message::text("nope")).await;
    }
    assert_eq!(ws.close_code().await, Some(1008), "the 11th bad frame within 10 s closes");
    assert!(gw.metric("gateway_bad_frames_total").await >= 11.0);
}

#[tokio::test]
async fn an_oversized_frame_closes_1009() {
    let gw = TestGateway::start(&[("GATEWAY_MAX_FRAME_BYTES", "1024")]);
    let mut ws = gw.device("u", "").await;
    ws.send_json(json!({"type": "ping", "pad": "x".repeat(900)})).await;
    assert!(matches!(ws.control().await, ControlFrame::Pong { .. }), "under the limit is fine");
    ws.send_json(json!({"type": "ping", "pad": "x".repeat(2000)})).await;
    assert_eq!(ws.close_code().await, Some(1009));
}

#[tokio::test]
async fn a_device_that_stops_reading_through_a_burst_then_reads_gets_all_of_it_with_no_close() {
    // 26 MB of deltas: the log keeps them all (PROTOCOL.md v1.1: a burst that fits in the
    // log's retention reaches every reading endpoint, whatever its queue).
    let gw = TestGateway::start(&[
        ("GATEWAY_WS_WRITE_BUFFER_BYTES", "0"),
        ("GATEWAY_LOG_RETENTION_BYTES", "67108864"),
    ]);
    let mut slow = gw.ws("u", "device_id=slow").await;
    let mut fast = gw.ws("u", "device_id=fast").await;
    let (epoch, _, _) = slow.hello().await;
    fast.hello().await;
    gw.create_turn("u", "c", "t1").await;
    // 64 KiB deltas: a few dozen fill the socket buffers of a client that does not read.
    let piece = "x".repeat(64 * 1024);
    let total = 400;
    let fast_reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..total + 1 {
            got.push(fast.event().await.seq);
        }
        (fast, got)
    });
    let publisher = {
        let (addr_gw, piece) = (gw.url(""), piece.clone());
        let http = gw.http.clone();
        tokio::spawn(async move {
            for chunk in 0..total / 20 {
                let body: String =
                    (0..20).map(|_| format!("{}\n", json!({"delta": piece}))).collect();
                let r = http
                    .post(format!("{addr_gw}/v1/turns/t1/events"))
                    .bearer_auth(producer_token())
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    200,
                    "publishing never blocks on the slow client (chunk {chunk})"
                );
            }
        })
    };
    publisher.await.unwrap();
    let (mut fast, got) = fast_reader.await.unwrap();
    assert_eq!(
        got,
        (1..=total as u64 + 1).collect::<Vec<_>>(),
        "the fast device got everything in order, never slowed by the other"
    );
    // The slow one only now reads: everything, in order, from its queue and then the log.
    gw.send_items("t1", &[end_item()]).await;
    let rest = slow.until_end("t1").await;
    let seqs: Vec<u64> = rest.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=total as u64 + 2).collect::<Vec<_>>(), "nothing lost, nothing twice");
    assert_eq!(gw.metric("gateway_slow_consumer_closes_total").await, 0.0, "no 4008");
    assert!(matches!(fast.event().await.body, EventBody::TurnEnd { .. }));
    let _ = epoch;
}

#[tokio::test]
async fn endpoints_per_user_are_limited() {
    let gw = TestGateway::start(&[("GATEWAY_MAX_ENDPOINTS_PER_USER", "2")]);
    let mut a = gw.ws("u", "").await;
    let _b = gw.sse("u", "", None).await;
    a.hello().await;
    let third = WsClient::connect(&gw.addr, &token("u", None), "", &[]).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    let sse = gw.sse("u", "", None).await;
    assert_eq!(sse.status, 429);
    gw.ws("v", "").await.hello().await;
    drop(a);
    // The place is given back once the connection is gone.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(mut c) = WsClient::connect(&gw.addr, &token("u", None), "", &[]).await {
            c.hello().await;
            ok = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok.is_some());
}

#[tokio::test]
async fn producer_errors_name_the_line_and_keep_earlier_lines() {
    let gw = TestGateway::start(&[("GATEWAY_MAX_NDJSON_LINE_BYTES", "2048")]);
    let mut ws = gw.device("u", "").await;
    gw.create_turn("u", "c", "t1").await;
    let body =
        "{\"delta\":\"a\"}\n\n{\"delta\":\"b\"}\n{\"delta\":7}\n{\"delta\":\"never\"}\n".to_owned();
    let (s, err) = gw.send_ndjson("t1", body).await;
    assert_eq!(s, 400);
    assert_eq!(err["error"]["code"], "bad_line");
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("line 4:"), "{msg}");
    assert!(msg.contains("2 earlier item(s) stay published"), "{msg}");
    let (_, state) = gw.get_json("/v1/turns/t1", &producer_token()).await;
    assert_eq!(state["next_index"], 2, "the lines before the bad one stay, none after");

    let (s, err) = gw.send_ndjson("t1", format!("{{\"delta\":\"{}\"}}\n", "y".repeat(4096))).await;
    assert_eq!(s, 413);
    assert_eq!(err["error"]["code"], "line_too_large");

    let (s, err) = gw
        .send_ndjson("t1", "{\"end\":{\"status\":\"completed\"}}\n{\"delta\":\"late\"}\n".into())
        .await;
    assert_eq!(s, 409, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().starts_with("line 2:"));
    let (_, state) = gw.get_json("/v1/turns/t1", &producer_token()).await;
    assert_eq!(state["status"], "completed");
    assert_eq!(state["next_index"], 2);

    // Single JSON bodies, unknown turns, bad requests.
    let (s, e) =
        gw.post_json("/v1/turns/nope/events", &producer_token(), &json!({"delta": "x"})).await;
    assert_eq!((s, e["error"]["code"].as_str().unwrap()), (404, "turn_not_found"));
    let (s, e) = gw.post_json("/v1/turns", &producer_token(), &json!({"user_id": "u"})).await;
    assert_eq!(s, 400);
    assert!(e["error"]["message"].as_str().unwrap().contains("conversation_id"), "{e}");
    let (s, e) = gw
        .post_json(
            "/v1/turns",
            &producer_token(),
            &json!({"user_id": "u", "conversation_id": "c", "turn_id": "has space"}),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str().unwrap()), (400, "invalid_request"));
    let (s, e) = gw.post_json("/v1/notifications", &producer_token(), &json!({"user_id": "u", "category": "c", "title": "t", "body": "b", "priority": "urgent"})).await;
    assert_eq!(s, 400, "{e}");
    // The server answers 413 early and drops the connection: use a client of its own.
    let r = reqwest::Client::new()
        .post(gw.url("/v1/notifications"))
        .bearer_auth(producer_token())
        .body(vec![b'{'; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = gw.http.delete(gw.url("/v1/turns")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = gw.http.get(gw.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let r = gw.http.get(gw.url("/v1/ws")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no token is a 401 before anything else");
    let r = gw.http.get(gw.url("/v1/ws")).bearer_auth(token("u", None)).send().await.unwrap();
    assert_eq!(r.status(), 426, "a token but no upgrade");
    let r = gw.http.get(gw.url("/v1/conversations/c/turns")).send().await.unwrap();
    assert_eq!(r.status(), 401, "history needs a token");
    let (s, e) = gw.get_json("/v1/conversations/c/turns?limit=0", &token("u", None)).await;
    assert_eq!((s, e["error"]["code"].as_str().unwrap()), (400, "invalid_request"));
    let (s, e) = gw.get_json("/v1/conversations/c/turns?before=zz", &token("u", None)).await;
    assert_eq!((s, e["error"]["code"].as_str().unwrap()), (400, "invalid_cursor"));

    // Nothing after the bad line reached the client either.
    let events = ws.until_end("t1").await;
    let deltas = events.iter().filter(|e| matches!(e.body, EventBody::TurnDelta { .. })).count();
    assert_eq!(deltas, 2);
}

#[tokio::test]
async fn origins_are_checked_against_the_allow_list() {
    let gw = TestGateway::start(&[("GATEWAY_ALLOWED_ORIGINS", "https://app.example")]);
    let t = token("u", None);
    let mut ok =
        WsClient::connect(&gw.addr, &t, "", &[("origin", "https://app.example")]).await.unwrap();
    ok.hello().await;
    let mut no_origin = WsClient::connect(&gw.addr, &t, "", &[]).await.unwrap();
    no_origin.hello().await;
    let mut evil =
        WsClient::connect(&gw.addr, &t, "", &[("origin", "https://evil.example")]).await.unwrap();
    assert_eq!(error_code(&mut evil).await, "origin_not_allowed");
    assert_eq!(evil.close_code().await, Some(1008));
    let r = gw
        .http
        .get(gw.url(&format!("/v1/sse?access_token={t}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = gw
        .http
        .get(gw.url(&format!("/v1/sse?access_token={t}")))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
}

#[tokio::test]
async fn an_sse_client_that_stops_reading_is_dropped_after_the_write_stall_limit() {
    let gw = TestGateway::start(&[("GATEWAY_WRITE_STALL_MS", "1000")]);
    let mut sse = gw.sse("u", "", None).await;
    sse.hello().await;
    assert_eq!(gw.metric("gateway_endpoints{transport=\"sse\"}").await, 1.0);
    // The client now reads nothing while the producer sends far more than the socket buffers.
    let big = "x".repeat(256 * 1024);
    for i in 0..100 {
        let body = json!({"user_id": "u", "category": "c", "title": format!("n{i}"), "body": big});
        let (s, _) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
        assert_eq!(s, 202, "publishing never blocks on the stalled client");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while gw.metric("gateway_endpoints{transport=\"sse\"}").await > 0.0 {
        assert!(std::time::Instant::now() < deadline, "the stalled SSE endpoint was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, p) = gw.get_json("/v1/users/u/presence", &token("u", None)).await;
    assert_eq!(p["endpoints"], json!([]), "and it left presence");
    drop(sse);
}
