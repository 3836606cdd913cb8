//! Test harness: the real `gateway` binary on `127.0.0.1:0`, driven by real clients.
#![allow(dead_code)]

pub mod nodes;
/// PostgreSQL for tests (a schema each, a switchable proxy), shared with the store's own tests.
#[path = "../../../store-client/tests/support/mod.rs"]
pub mod pg;
/// A private `redis-server` (or `REDIS_URL`), shared with the presence tests.
#[path = "../../../presence/tests/support/mod.rs"]
pub mod redis_server;
pub mod sse;
pub mod turns;
pub mod webhook;
pub mod ws;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wire::Claims;

pub use sse::SseClient;
#[allow(unused_imports)]
pub use turns::{assert_contiguous, stored};
pub use ws::WsClient;

pub const SECRET: &str = "integration-test-secret-0123456789";

/// A running gateway process, killed on drop.
pub struct TestGateway {
    child: Child,
    pub addr: String,
    pub http: reqwest::Client,
    /// Its `GATEWAY_DATA_DIR` (embedded store and outbox), removed on drop unless `keep_data`.
    pub data_dir: PathBuf,
    pub keep_data: bool,
}

/// A fresh directory under the system's temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()))
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn token(sub: &str, scope: Option<&str>) -> String {
    let mut c = Claims::new(sub, now(), 3600);
    c.scope = scope.map(str::to_owned);
    sign(&c)
}

pub fn sign(c: &Claims) -> String {
    gateway::auth::sign_hs256(SECRET, c)
}

pub fn producer_token() -> String {
    token("orchestrator", Some("gateway.publish"))
}

impl TestGateway {
    /// Starts a gateway with the test secret, a data directory of its own and `env` on top.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_in(&temp_dir("gw-data"), env)
    }

    /// Starts a gateway on `data_dir` (a restart keeps its outbox and embedded store).
    pub fn start_in(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.env_clear()
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_DATA_DIR", data_dir)
            .env("GATEWAY_AUTH_HS256_SECRET", SECRET)
            .env("GATEWAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut child = cmd.spawn().expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("gateway printed nothing").expect("read stdout");
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestGateway {
            child,
            addr,
            http: reqwest::Client::new(),
            data_dir: data_dir.to_owned(),
            keep_data: false,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects a WebSocket for `user` with extra query parameters.
    pub async fn ws(&self, user: &str, query: &str) -> WsClient {
        WsClient::connect(&self.addr, &token(user, None), query, &[]).await.expect("ws connect")
    }

    /// [`ws`](Self::ws), its `hello` read: a device ready for the events that follow.
    pub async fn device(&self, user: &str, query: &str) -> WsClient {
        let mut ws = self.ws(user, query).await;
        ws.hello().await;
        ws
    }

    pub async fn sse(&self, user: &str, query: &str, last_event_id: Option<&str>) -> SseClient {
        SseClient::connect(
            &self.http,
            &self.url("/v1/sse"),
            &token(user, None),
            query,
            last_event_id,
        )
        .await
        .expect("sse connect")
    }

    /// `POST /v1/turns` as the producer; returns (status, body).
    pub async fn create_turn(&self, user: &str, conv: &str, turn_id: &str) -> (u16, Value) {
        let body =
            serde_json::json!({"user_id": user, "conversation_id": conv, "turn_id": turn_id});
        self.post_json("/v1/turns", &producer_token(), &body).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(token).send().await.expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts NDJSON items in one body; returns (status, body).
    pub async fn send_items(&self, turn_id: &str, items: &[Value]) -> (u16, Value) {
        let body: String = items.iter().map(|i| format!("{i}\n")).collect();
        self.send_ndjson(turn_id, body).await
    }

    pub async fn send_ndjson(&self, turn_id: &str, body: String) -> (u16, Value) {
        self.post_ndjson(&format!("/v1/turns/{turn_id}/events"), body).await
    }

    /// Posts an NDJSON body as the producer; returns (status, body).
    pub async fn post_ndjson(&self, path: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(producer_token())
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("post events");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn notify(&self, user: &str, title: &str, dedup_key: Option<&str>) -> (u16, Value) {
        let mut body =
            serde_json::json!({"user_id": user, "category": "test", "title": title, "body": "b"});
        if let Some(k) = dedup_key {
            body["dedup_key"] = k.into();
        }
        self.post_json("/v1/notifications", &producer_token(), &body).await
    }

    /// The value of one metric line (name with labels, as printed).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// `n` delta items whose texts concatenate to the returned string (multi-byte text included).
pub fn deltas(n: usize, tag: &str) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut text = String::new();
    for i in 0..n {
        let piece = format!("{tag}{i}·é ");
        text.push_str(&piece);
        items.push(serde_json::json!({"delta": piece}));
    }
    (items, text)
}

/// The `task_id`s of a task hub page, in its order.
pub fn task_ids(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page of tasks: {page}"))
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_owned())
        .collect()
}

pub fn end_item() -> Value {
    serde_json::json!({"end": {"status": "completed"}})
}
