//! Resources a peer holds before it is known are bounded (issue "Hardening", item 5): a socket
//! that sends nothing or half a head is closed at the header timeout, a trickled body gets 408,
//! connections past the global cap or the per-IP cap of unauthenticated ones are refused with
//! an error body while `/healthz` still answers, and a request head past its cap gets 431.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(&gw.addr).await.unwrap()
}

/// A connection from another loopback address (another "IP" for the per-IP cap).
async fn connect_from(gw: &TestGateway, source: [u8; 4]) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind((std::net::Ipv4Addr::from(source), 0).into()).unwrap();
    s.connect(gw.addr.parse().unwrap()).await.unwrap()
}

/// Sends a raw request; returns the status line and the body.
async fn raw(mut s: TcpStream, request: &str) -> (String, String) {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// How long until the server closes `s` (reads nothing); panics after `limit`.
async fn closed_after(mut s: TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(limit, s.read(&mut buf)).await.expect("still open");
    assert!(matches!(n, Ok(0) | Err(_)), "got bytes: {n:?}");
    started.elapsed()
}

#[tokio::test]
async fn silent_and_half_sent_heads_are_closed_at_the_header_timeout() {
    let gw = TestGateway::start(&[("GATEWAY_HEADER_READ_TIMEOUT_MS", "400")]);
    let silent = connect(&gw).await;
    let mut half = connect(&gw).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (a, b) = tokio::join!(
        closed_after(silent, Duration::from_secs(5)),
        closed_after(half, Duration::from_secs(5))
    );
    assert!(a >= Duration::from_millis(300) && b >= Duration::from_millis(300), "{a:?} {b:?}");
    let (s, _) = gw.get_json("/healthz", "").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_trickled_ndjson_body_gets_408_and_its_complete_lines_stay_published() {
    let gw = TestGateway::start(&[("GATEWAY_BODY_IDLE_TIMEOUT_MS", "500")]);
    assert_eq!(gw.create_turn("trickle", "c", "tt").await.0, 201);
    let token = producer_token();
    let mut s = connect(&gw).await;
    let head = format!(
        "POST /v1/turns/tt/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let line = "{\"delta\":\"one\"}\n";
    s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).await.unwrap();
    // Half a line, then nothing.
    s.write_all(b"5\r\n{\"del\r\n").await.unwrap();
    let started = Instant::now();
    let (status, body) = raw(s, "").await;
    assert!(status.contains("408"), "{status} {body}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let b: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(b["error"]["code"], "body_timeout", "{body}");
    let (_, t) = gw.get_json("/v1/turns/tt", &producer_token()).await;
    assert_eq!(t["next_index"], 1, "the complete line stays published: {t}");
}

#[tokio::test]
async fn unauthenticated_connections_are_capped_per_address_and_health_still_answers() {
    let gw = TestGateway::start(&[("GATEWAY_MAX_PENDING_PER_IP", "4")]);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(&gw).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) =
        raw(connect(&gw).await, "GET /v1/turns/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(status.contains("429"), "{status}");
    assert!(body.contains("too_many_pending_connections"), "{body}");
    let (status, _) = raw(connect(&gw).await, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(status.contains("200"), "health checks still answer: {status}");
    // Another address is not held back by this one.
    let other = connect_from(&gw, [127, 0, 0, 2]).await;
    let (status, _) =
        raw(other, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(status.contains("200"), "{status}");
    // A connection that presented a valid token no longer counts.
    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ws = gw.device("capped", "").await;
    let (status, _) =
        raw(connect(&gw).await, "GET /v1/turns/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
    assert!(status.contains("401"), "a slot is free again (the WebSocket authenticated): {status}");
}

#[tokio::test]
async fn a_request_head_past_its_cap_gets_431_with_an_error_body() {
    let gw = TestGateway::start(&[("GATEWAY_MAX_HEADER_BYTES", "16384")]);
    let head = |pad: usize| {
        let pad = "a".repeat(pad);
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: {pad}\r\n\r\n")
    };
    let (status, _) = raw(connect(&gw).await, &head(15_000)).await;
    assert!(status.contains("200"), "under the cap: {status}");
    let (status, body) = raw(connect(&gw).await, &head(20_000)).await;
    assert!(status.contains("431"), "{status}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["error"]["code"], "headers_too_large");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(message.contains("GATEWAY_MAX_HEADER_BYTES"), "{message}");
    // Far past it, hyper's buffer stops reading (its own 431); the node serves on.
    let mut s = connect(&gw).await;
    let _ = s.write_all(head(4 << 20).as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"), "{out:?}");
    let (s, _) = gw.get_json("/healthz", "").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn past_the_global_cap_new_connections_get_503_and_healthz_answers() {
    let gw = TestGateway::start(&[("GATEWAY_MAX_CONNECTIONS", "8")]);
    let mut held = Vec::new();
    for i in 0..8u8 {
        held.push(connect_from(&gw, [127, 0, 1, i + 1]).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) =
        raw(connect(&gw).await, "GET /v1/conversations/c/turns HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(status.contains("503"), "{status}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["error"]["code"], "too_many_connections");
    let (status, _) = raw(connect(&gw).await, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(status.contains("200"), "{status}");
    assert!(gw.metric("gateway_connections_open").await >= 8.0, "the gauge sees them");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s, _) = gw
        .post_json("/v1/turns", &producer_token(), &json!({"user_id": "u", "conversation_id": "c"}))
        .await;
    assert_eq!(s, 201, "slots come back when connections close");
}

/// A WebSocket opened by hand, so the test can send what no library would.
async fn raw_ws(gw: &TestGateway, user: &str) -> TcpStream {
    let mut s = connect(gw).await;
    let req = format!(
        "GET /v1/ws?access_token={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        token(user, None)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// Reads server frames until a close; returns its code.
async fn close_code_of(s: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let b0 = s.read_u8().await.ok()?;
            let mut len = (s.read_u8().await.ok()? & 0x7f) as u64;
            if len == 126 {
                len = s.read_u16().await.ok()? as u64;
            } else if len == 127 {
                len = s.read_u64().await.ok()?;
            }
            let mut payload = vec![0u8; len as usize];
            s.read_exact(&mut payload).await.ok()?;
            if b0 & 0x0f == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.ok().flatten()
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

#[tokio::test]
async fn websocket_protocol_errors_get_the_close_code_rfc_6455_names() {
    let gw = TestGateway::start(&[]);
    let cases: [(&str, Vec<u8>, u16); 3] = [
        ("text that is not UTF-8", masked(0x81, &[0xff, 0xfe, 0xfd]), 1007),
        ("an unmasked client frame", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("a reserved bit set", masked(0xc1, b"{}"), 1002),
    ];
    for (what, frame, want) in cases {
        let mut s = raw_ws(&gw, "rawws").await;
        s.write_all(&frame).await.unwrap();
        assert_eq!(close_code_of(&mut s).await, Some(want), "{what}");
    }
}
