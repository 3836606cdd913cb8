//! The floor for paced streaming: the least a server can do to carry the stream scenarios with
//! the same endpoints, frames and pacing as the gateway. It speaks just enough of the protocol
//! for `loadtest run` (WebSocket `hello`, `POST /v1/turns`, NDJSON `POST /v1/turns/{id}/events`
//! read as it arrives) and does nothing else: tokens are not verified (the user is read from
//! the JWT payload), nothing is kept, and each event costs what it must: serialised and framed
//! once (server frames are unmasked, so the same bytes serve every WebSocket of the user) and
//! written by the publishing request's task straight into each socket, one `write` each, no
//! task woken; only a socket that does not take it all at once gets the rest queued to its own
//! writer task. No SSE, resume, notifications or limits. The gateway's CPU per delivered event
//! divided by this server's, measured by the same client in one run, is the ratio issue 15
//! drives towards 1.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use wire::{ControlFrame, EventBody, LogEvent, ServerFrame, TurnStatus};

/// One WebSocket: written inline while it takes the bytes, else through its writer task.
struct Sock {
    tcp: TcpStream,
    /// Bytes the socket did not take yet (its writer task drains them, in order).
    pending: Mutex<Vec<u8>>,
    wake: Notify,
    closed: AtomicBool,
}

impl Sock {
    fn send(&self, frame: &[u8]) {
        let mut p = self.pending.lock();
        if !p.is_empty() {
            p.extend_from_slice(frame);
            return;
        }
        match self.tcp.try_write(frame) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => p.extend_from_slice(&frame[n..]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => p.extend_from_slice(frame),
            Err(_) => return self.closed.store(true, Ordering::Relaxed),
        }
        self.wake.notify_one();
    }

    /// Drains what the socket did not take inline.
    async fn writer(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            loop {
                if self.tcp.writable().await.is_err() {
                    return self.closed.store(true, Ordering::Relaxed);
                }
                let mut p = self.pending.lock();
                match self.tcp.try_write(&p) {
                    Ok(n) => drop(p.drain(..n)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return self.closed.store(true, Ordering::Relaxed),
                }
                if p.is_empty() {
                    break;
                }
            }
        }
    }
}

/// A WebSocket text frame (server to client: unmasked).
fn ws_frame(text: &str) -> Vec<u8> {
    let len = text.len();
    let mut f = Vec::with_capacity(len + 10);
    f.push(0x81);
    match len {
        0..=125 => f.push(len as u8),
        126..=65535 => {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(text.as_bytes());
    f
}

/// One user's log head and live WebSockets.
#[derive(Default)]
struct User {
    seq: u64,
    sockets: Vec<Arc<Sock>>,
}

#[derive(Default)]
struct Floor {
    users: Mutex<HashMap<String, User>>,
    /// turn id → (user, next delta index).
    turns: Mutex<HashMap<String, (String, u64)>>,
    conns: AtomicU64,
}

impl Floor {
    /// Gives `body` the user's next seq and writes it to every socket of theirs.
    fn publish(&self, user: &str, body: EventBody) -> u64 {
        let mut users = self.users.lock();
        let u = users.entry(user.to_owned()).or_default();
        u.seq += 1;
        let text = serde_json::to_string(&ServerFrame::Event(LogEvent { seq: u.seq, body }))
            .unwrap_or_default();
        let frame = ws_frame(&text);
        u.sockets.retain(|s| !s.closed.load(Ordering::Relaxed));
        for s in &u.sockets {
            s.send(&frame);
        }
        u.seq
    }
}

/// Serves the floor on 127.0.0.1 (a free port), printing `listening on http://…` first:
/// `GET /v1/ws` is taken off the socket by hand, the producer API goes to hyper.
pub async fn serve() -> anyhow::Result<()> {
    let floor = Arc::new(Floor::default());
    let app = axum::Router::new()
        .route("/v1/turns", axum::routing::post(create))
        .route("/v1/turns/{id}/events", axum::routing::post(events))
        .route("/metrics", axum::routing::get(|| async { "" }))
        .with_state(floor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (floor, app) = (floor.clone(), app.clone());
        tokio::spawn(async move {
            let mut head = [0u8; 10];
            let is_ws =
                matches!(tcp.peek(&mut head).await, Ok(n) if head[..n].starts_with(b"GET /v1/ws"));
            if is_ws {
                let _ = endpoint(floor, tcp).await;
            } else {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            }
        });
    }
}

/// The `sub` of a JWT, unverified (the floor does no auth).
fn subject(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_owned)
}

/// A query parameter of a request line's target.
fn param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    let found = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name);
    found.map(|(_, v)| v.into_owned())
}

/// One WebSocket: the handshake, a hello, then the publishers write to it; this task only
/// reads (and drops) what the client sends, until it goes.
async fn endpoint(floor: Arc<Floor>, mut tcp: TcpStream) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 2048];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = tcp.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let req = String::from_utf8_lossy(&req).into_owned();
    let target = req.split(' ').nth(1).unwrap_or("");
    let key = req.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("sec-websocket-key").then(|| v.trim().to_owned())
    });
    let (Some(user), Some(key)) = (param(target, "access_token").and_then(|t| subject(&t)), key)
    else {
        return tcp.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n").await;
    };
    let accept = derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(answer.as_bytes()).await?;
    let sock = Arc::new(Sock {
        tcp,
        pending: Mutex::new(Vec::new()),
        wake: Notify::new(),
        closed: AtomicBool::new(false),
    });
    tokio::spawn(sock.clone().writer());
    let n = floor.conns.fetch_add(1, Ordering::Relaxed);
    {
        let mut users = floor.users.lock();
        let u = users.entry(user.clone()).or_default();
        let hello = ControlFrame::Hello {
            conn_id: format!("c{n}"),
            user_id: user,
            device_id: param(target, "device_id").unwrap_or_default(),
            node_id: "floor".into(),
            epoch: "floor".into(),
            seq: u.seq,
            resumed: false,
            heartbeat_ms: 0,
        };
        sock.send(&ws_frame(&hello.to_json()));
        u.sockets.push(sock.clone());
    }
    let mut sink = [0u8; 1024];
    loop {
        sock.tcp.readable().await?;
        match sock.tcp.try_read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    sock.closed.store(true, Ordering::Relaxed);
    sock.wake.notify_one();
    Ok(())
}

fn bearer(h: &HeaderMap) -> bool {
    h.get("authorization").is_some()
}

async fn create(
    State(floor): State<Arc<Floor>>,
    headers: HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    let (Some(user), Some(turn_id)) = (req["user_id"].as_str(), req["turn_id"].as_str()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if !bearer(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let start = EventBody::TurnStart {
        turn_id: turn_id.to_owned(),
        conversation_id: req["conversation_id"].as_str().unwrap_or("").to_owned(),
        created_at: String::new(),
        meta: req.get("meta").cloned(),
    };
    floor.turns.lock().insert(turn_id.to_owned(), (user.to_owned(), 0));
    let seq = floor.publish(user, start);
    (StatusCode::CREATED, Json(json!({"turn_id": turn_id, "seq": seq}))).into_response()
}

/// NDJSON items published as their lines arrive.
async fn events(State(floor): State<Arc<Floor>>, Path(id): Path<String>, body: Body) -> Response {
    let Some((user, _)) = floor.turns.lock().get(&id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (mut buf, mut accepted, mut last) = (Vec::new(), 0u64, None);
    let mut stream = body.into_data_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let Ok(item) = serde_json::from_slice::<Value>(&line) else { continue };
            let body = if let Some(text) = item["delta"].as_str() {
                let index = {
                    let mut turns = floor.turns.lock();
                    let Some(t) = turns.get_mut(&id) else { break };
                    t.1 += 1;
                    t.1 - 1
                };
                EventBody::TurnDelta { turn_id: id.clone(), index, text: text.to_owned() }
            } else if item.get("end").is_some() {
                floor.turns.lock().remove(&id);
                EventBody::TurnEnd {
                    turn_id: id.clone(),
                    status: TurnStatus::Completed,
                    error: None,
                }
            } else {
                continue;
            };
            last = Some(floor.publish(&user, body));
            accepted += 1;
        }
    }
    Json(json!({"accepted": accepted, "last_seq": last})).into_response()
}
