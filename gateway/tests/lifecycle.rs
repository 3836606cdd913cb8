//! Process life: start-up errors, health, metrics, presence, drain on SIGTERM.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use wire::ControlFrame;

#[test]
fn bad_settings_stop_start_up_with_exit_64_naming_each() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("GATEWAY_HEARTBEAT_MS", "often")
        .env("GATEWAY_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["GATEWAY_HEARTBEAT_MS", "GATEWAY_LISTEN", "GATEWAY_AUTH_HS256_SECRET"] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", "/no/such/file.toml", "--dev"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[tokio::test]
async fn dev_mode_prints_tokens_that_work() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--dev")
        .env_clear()
        .env("GATEWAY_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines.next_line().await.unwrap().unwrap().replace("listening on http://", "");
    let user = lines.next_line().await.unwrap().unwrap();
    let producer = lines.next_line().await.unwrap().unwrap();
    let user = user.rsplit(' ').next().unwrap().to_owned();
    let producer = producer.rsplit(' ').next().unwrap().to_owned();
    let mut ws =
        WsClient::connect(&addr, &user, "", &[("origin", "http://localhost:3000")]).await.unwrap();
    assert!(
        matches!(ws.control().await, ControlFrame::Hello { user_id, .. } if user_id == "dev-user")
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{addr}/v1/notifications"))
        .bearer_auth(&producer)
        .json(&json!({"user_id": "dev-user", "category": "c", "title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(ws.event().await.seq, 1);
}

#[tokio::test]
async fn health_readiness_metrics_and_presence() {
    let gw = TestGateway::start(&[("GATEWAY_NODE_ID", "node-a")]);
    let (s, h) = gw.get_json("/healthz", "").await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, r) = gw.get_json("/readyz", "").await;
    assert_eq!((s, r["status"].as_str()), (200, Some("ready")));

    let mut ws = gw.device("u", "device_id=phone&surface=ios").await;
    let mut sse = gw.sse("u", "device_id=teams-1&surface=teams", None).await;
    sse.hello().await;
    let (s, p) = gw.get_json("/v1/users/u/presence", &token("u", None)).await;
    assert_eq!(s, 200);
    let eps = p["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["device_id"], "phone");
    assert_eq!(eps[0]["surface"], "ios");
    assert_eq!(eps[0]["transport"], "ws");
    assert_eq!(eps[0]["node_id"], "node-a");
    assert!(eps[0]["conn_id"].as_str().unwrap().starts_with("c_"));
    assert_eq!(eps[1]["transport"], "sse");
    assert_eq!(eps[1]["surface"], "teams");
    ws.send_json(json!({"type": "presence.get", "ref": 1})).await;
    match ws.control().await {
        ControlFrame::Presence { endpoints, .. } => assert_eq!(endpoints.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(gw.metric("gateway_endpoints{transport=\"ws\"}").await, 1.0);
    assert_eq!(gw.metric("gateway_endpoints{transport=\"sse\"}").await, 1.0);
    gw.notify("u", "n", None).await;
    ws.event().await;
    sse.event().await;
    assert_eq!(gw.metric("gateway_events_published_total").await, 1.0);
    assert_eq!(gw.metric("gateway_events_delivered_total").await, 2.0);
    assert!(gw.metric("process_resident_memory_bytes").await > 1e6);

    drop(sse);
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, p) = gw.get_json("/v1/users/u/presence", &token("u", None)).await;
        if p["endpoints"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "closed endpoints leave presence: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.metric("gateway_endpoints{transport=\"ws\"}").await, 0.0);
}

#[tokio::test]
async fn sigterm_drains_with_reconnect_and_1012_then_exits_0() {
    let mut gw = TestGateway::start(&[
        ("GATEWAY_DRAIN_TIMEOUT_MS", "8000"),
        ("GATEWAY_RECONNECT_AFTER_MS", "250"),
    ]);
    let mut ws = gw.device("u", "").await;
    let mut sse = gw.sse("u", "", None).await;
    sse.hello().await;
    // A client that does not answer the close keeps the drain in its endpoint phase for a while.
    let stubborn = gw.device("u", "").await;
    gw.create_turn("u", "c", "t1").await;
    ws.event().await;
    sse.event().await;

    // An NDJSON stream in flight before the drain.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let stream = futures_util::stream::poll_fn({
        let mut rx = rx;
        move |cx| rx.poll_recv(cx)
    });
    let inflight = tokio::spawn(
        gw.http
            .post(gw.url("/v1/turns/t1/events"))
            .bearer_auth(producer_token())
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    tx.send(Ok("{\"delta\":\"before\"}\n".into())).await.unwrap();
    ws.event().await;

    let started = Instant::now();
    gw.signal("TERM");
    assert_eq!(ws.control().await, ControlFrame::Reconnect { after_ms: 250 });
    assert_eq!(ws.close_code().await, Some(1012));
    let sse_events: Vec<_> = {
        let mut v = Vec::new();
        while let Some(e) = sse.next().await {
            v.push(e);
        }
        v
    };
    let last = sse_events.last().expect("a reconnect event");
    assert_eq!(last.event, "reconnect");
    assert_eq!(last.retry, Some(250));

    // While draining: no new work, readiness down, but the turn in flight continues.
    let (s, body) = gw.create_turn("u", "c", "t2").await;
    assert_eq!((s, body["error"]["code"].as_str()), (503, Some("draining")));
    let (s, _) = gw.notify("u", "n", None).await;
    assert_eq!(s, 503);
    let (s, _) = gw.get_json("/readyz", "").await;
    assert_eq!(s, 503);
    tx.send(Ok("{\"delta\":\"during\"}\n{\"end\":{\"status\":\"completed\"}}\n".into()))
        .await
        .unwrap();
    drop(tx);
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 3);

    drop(stubborn);
    let status = gw.wait_exit(Duration::from_secs(12)).expect("exited within the drain bound");
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let gw = TestGateway::start(&[]);
    let mut ws = gw.device("u", "").await;
    let frame = CloseFrame { code: 1000.into(), reason: "bye".into() };
    ws.ws.send(Message::Close(Some(frame))).await.unwrap();
    let reply =
        tokio::time::timeout(Duration::from_secs(5), ws.ws.next()).await.expect("an answer");
    assert!(
        matches!(reply, Some(Ok(Message::Close(_)))),
        "the server answers the close: {reply:?}"
    );
}
