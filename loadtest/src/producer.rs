//! The simulated orchestrator: starts turns at a rate, streams each turn's deltas as NDJSON at
//! the token rate (one open request per turn, a line per token), ends them, and sends
//! notifications. Every delta's text starts with its send time so clients can measure delivery
//! latency; the producer keeps the full text of each turn for the checker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::checker;
use crate::ctx::SharedCtx;
use crate::stats::Stats;
use crate::tokens::user_id;

/// A token rate at or above this is "as fast as possible".
const UNPACED: f64 = 10_000.0;

/// Runs the producer for the scenario's duration, then waits for its turns to end.
pub async fn run(ctx: SharedCtx) -> anyhow::Result<()> {
    let s = &ctx.scenario;
    let token: Arc<str> = Arc::from(ctx.tokens.producer()?);
    let deadline = Instant::now() + Duration::from_secs_f64(s.duration_s);
    let slots = Arc::new(Semaphore::new(s.max_turns as usize));
    let mut tasks = JoinSet::new();
    let counter = Arc::new(AtomicU64::new(0));

    let mut turn_tick = (s.turn_rate > 0.0).then(|| ticker(s.turn_rate));
    let mut notif_tick = (s.notification_rate > 0.0).then(|| ticker(s.notification_rate));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = ctx.stop.cancelled() => break,
            _ = tick(&mut turn_tick) => {
                // A turn only starts when a slot is free: at most max_turns stream at once.
                let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let user = (n % s.users as u64) as u32;
                let (ctx, token) = (ctx.clone(), token.clone());
                tasks.spawn(async move {
                    turn(&ctx, &token, user, n).await;
                    drop(permit);
                });
            }
            _ = tick(&mut notif_tick) => {
                let user = rand::rng().random_range(0..s.users);
                let (ctx, token) = (ctx.clone(), token.clone());
                tasks.spawn(async move { notify(&ctx, &token, user).await; });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// One notification to every user at once (the burst scenario).
pub async fn burst(ctx: SharedCtx) -> anyhow::Result<()> {
    for_every_user(ctx, 256, |ctx, token, user| async move { notify(&ctx, &token, user).await })
        .await
}

/// One turn to every user at once, each turn's deltas and end in one NDJSON write.
pub async fn burst_turns(ctx: SharedCtx) -> anyhow::Result<()> {
    for_every_user(ctx, 32, |ctx, token, user| async move { burst_turn(&ctx, &token, user).await })
        .await
}

/// Runs `f` for every user as the producer, at most `limit` at once.
async fn for_every_user<F, Fut>(ctx: SharedCtx, limit: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(SharedCtx, Arc<str>, u32) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let token: Arc<str> = Arc::from(ctx.tokens.producer()?);
    let limit = Arc::new(Semaphore::new(limit));
    let mut tasks = JoinSet::new();
    for user in 0..ctx.scenario.users {
        let (limit, work) = (limit.clone(), f(ctx.clone(), token.clone(), user));
        tasks.spawn(async move {
            let _p = limit.acquire().await;
            work.await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn burst_turn(ctx: &SharedCtx, token: &str, user: u32) {
    let turn_id = checker::turn_id(&ctx.run, user, user as u64);
    let body = json!({"user_id": user_id(user), "conversation_id": format!("lb{user}"), "turn_id": turn_id});
    let Some(created) = post_any(ctx, token, user as usize, "/v1/turns", body).await else {
        return;
    };
    Stats::add(&ctx.stats.turns_started, 1);
    Stats::add(&ctx.stats.published, 1);
    if let Some(seq) = created["seq"].as_u64() {
        ctx.saw_head(user, seq);
    }
    let pad = "x".repeat(ctx.scenario.token_bytes as usize - 13);
    let (mut lines, mut text) = (String::new(), String::new());
    for _ in 0..ctx.scenario.burst_deltas {
        let delta = format!("{:012}|{pad}", ctx.now_us());
        lines.push_str(&format!("{}\n", json!({"delta": delta})));
        text.push_str(&delta);
    }
    lines.push_str("{\"end\":{\"status\":\"completed\"}}\n");
    ctx.ledger.texts.insert(turn_id.clone(), text);
    let r = ctx
        .http
        .post(url(ctx, user as usize + 1, &format!("/v1/turns/{turn_id}/events")))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => {
            Stats::add(&ctx.stats.published, ctx.scenario.burst_deltas as u64 + 1);
            if let Ok(v) = r.json::<Value>().await
                && let Some(seq) = v["last_seq"].as_u64()
            {
                ctx.saw_head(user, seq);
            }
        }
        other => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("burst turn {turn_id}: {other:?}");
        }
    }
}

fn ticker(rate: f64) -> tokio::time::Interval {
    let mut t = interval(Duration::from_secs_f64(1.0 / rate));
    t.set_missed_tick_behavior(MissedTickBehavior::Burst);
    t
}

async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `path` on node `node` (any number: it wraps around the nodes).
fn url(ctx: &SharedCtx, node: usize, path: &str) -> String {
    format!("{}{path}", ctx.base(node))
}

async fn post(ctx: &SharedCtx, token: &str, node: usize, path: &str, body: Value) -> Option<Value> {
    let r = ctx.http.post(url(ctx, node, path)).bearer_auth(token).json(&body).send().await;
    match r {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        Ok(r) => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("POST {path}: {} {}", r.status(), r.text().await.unwrap_or_default());
            None
        }
        Err(e) => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("POST {path}: {e}");
            None
        }
    }
}

async fn notify(ctx: &SharedCtx, token: &str, user: u32) {
    let body = json!({
        "user_id": user_id(user),
        "category": "load",
        "title": checker::notification_title(user),
        "body": "load test",
        "data": {"sent_us": ctx.now_us()},
        // A retry on another node (the first answer was lost) publishes nothing twice.
        "dedup_key": format!("{:016x}", rand::random::<u64>()),
    });
    if let Some(r) = post_any(ctx, token, user as usize, "/v1/notifications", body).await
        && let Some(seq) = r["seq"].as_u64()
    {
        Stats::add(&ctx.stats.notifications_sent, 1);
        Stats::add(&ctx.stats.published, 1);
        ctx.saw_head(user, seq);
    }
}

/// How many nodes a request is tried on before the producer gives up on it.
const ATTEMPTS: usize = 6;

/// Posts `body` to `path`, moving to the next node after a failure (a node killed or draining,
/// Redis restarting): what a real orchestrator does with idempotent calls.
async fn post_any(
    ctx: &SharedCtx,
    token: &str,
    node: usize,
    path: &str,
    body: Value,
) -> Option<Value> {
    for attempt in 0..ATTEMPTS {
        if let Some(v) = post(ctx, token, node + attempt, path, body.clone()).await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt.min(4))).await;
    }
    None
}

async fn turn(ctx: &SharedCtx, token: &str, user: u32, n: u64) {
    let turn_id = checker::turn_id(&ctx.run, user, n);
    ctx.ledger.texts.insert(turn_id.clone(), String::new());
    let body = json!({
        "user_id": user_id(user),
        "conversation_id": format!("lc{user}"),
        "turn_id": turn_id,
        "meta": {"t0_us": ctx.now_us()},
    });
    // Started on one node, streamed through the next: a producer may call any node. Creating
    // is idempotent on the turn id, so a retry elsewhere is safe.
    let node = n as usize;
    let Some(created) = post_any(ctx, token, node, "/v1/turns", body).await else { return };
    Stats::add(&ctx.stats.turns_started, 1);
    Stats::add(&ctx.stats.published, 1);
    if let Some(seq) = created["seq"].as_u64() {
        ctx.saw_head(user, seq);
    }
    let mut stream = TurnStream::new(ctx, turn_id);
    let mut node = node + 1;
    for _ in 0..ATTEMPTS {
        match stream.send_through(ctx, token, node).await {
            Ok(last_seq) => {
                Stats::add(&ctx.stats.published, 1);
                if let Some(seq) = last_seq {
                    ctx.saw_head(user, seq);
                }
                return;
            }
            Err(e) => {
                Stats::add(&ctx.stats.http_errors, 1);
                eprintln!("turn {}: {e}; resuming on another node", stream.turn_id);
            }
        }
        // Where did the gateway get to? Resend from there (the same deltas, in order).
        node += 1;
        match turn_position(ctx, token, node, &stream.turn_id).await {
            Some((status, next)) if status == "streaming" => stream.from = next as usize,
            Some(_) => return, // it ended (the end went through; its answer was lost)
            None => return,
        }
    }
}

/// `GET /v1/turns/{id}` on any node: (status, next_index), retried while nodes are away.
async fn turn_position(
    ctx: &SharedCtx,
    token: &str,
    node: usize,
    turn_id: &str,
) -> Option<(String, u64)> {
    for attempt in 0..ATTEMPTS * 5 {
        let r = ctx.http.get(url(ctx, node + attempt, &format!("/v1/turns/{turn_id}")));
        if let Ok(r) = r.bearer_auth(token).send().await
            && r.status().is_success()
            && let Ok(v) = r.json::<Value>().await
        {
            let status = v["status"].as_str().unwrap_or("").to_owned();
            return Some((status, v["next_index"].as_u64().unwrap_or(0)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// One turn's deltas: made at the token rate, kept so that a request cut short can be resent
/// from the index the gateway reached.
struct TurnStream {
    turn_id: String,
    /// The NDJSON lines made so far.
    lines: Vec<String>,
    /// The first line the next request sends.
    from: usize,
    tick: tokio::time::Interval,
    pad: String,
    total: usize,
    per_chunk: usize,
}

impl TurnStream {
    fn new(ctx: &SharedCtx, turn_id: String) -> Self {
        let s = &ctx.scenario;
        // Each turn on its own timer, its phase drawn at random: a real orchestrator's turns do
        // not tick together (a shared tick would send every turn's delta at once).
        let period = Duration::from_secs_f64(1.0 / s.token_rate);
        let phase = period.mul_f64(rand::rng().random_range(0.0..1.0));
        let mut tick = tokio::time::interval_at(Instant::now() + phase, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        TurnStream {
            turn_id,
            lines: Vec::new(),
            from: 0,
            tick,
            pad: "x".repeat(s.token_bytes as usize - 13),
            total: s.tokens_per_turn as usize,
            // Unpaced (saturation) runs put many lines in one chunk, as a real producer's
            // buffered writer would; paced runs send each token as it comes.
            per_chunk: if s.token_rate >= UNPACED { 64 } else { 1 },
        }
    }

    /// The next delta line, made now (its text starts with the send time).
    fn make(&mut self, ctx: &SharedCtx) -> String {
        let text = format!("{:012}|{}", ctx.now_us(), self.pad);
        if let Some(mut so_far) = ctx.ledger.texts.get_mut(&self.turn_id) {
            so_far.push_str(&text);
        }
        Stats::add(&ctx.stats.published, 1);
        let line = format!("{}\n", json!({"delta": text}));
        self.lines.push(line.clone());
        line
    }

    /// Streams the rest of the turn, then its end, through one request to `node`; the events
    /// request stays open while tokens are produced. Returns the last seq, or why it failed.
    async fn send_through(
        &mut self,
        ctx: &SharedCtx,
        token: &str,
        node: usize,
    ) -> Result<Option<u64>, String> {
        let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(16);
        let body =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|l| (l, rx)) },
            );
        let request = ctx
            .http
            .post(url(ctx, node, &format!("/v1/turns/{}/events", self.turn_id)))
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let response = tokio::spawn(request);
        // What a request cut short had not got through: resent at once.
        let backlog: String = self.lines[self.from.min(self.lines.len())..].concat();
        let mut cut = !backlog.is_empty() && tx.send(Ok(backlog)).await.is_err();
        let (mut chunk, mut in_chunk) = (String::new(), 0);
        while !cut && self.lines.len() < self.total {
            self.tick.tick().await;
            chunk.push_str(&self.make(ctx));
            in_chunk += 1;
            if in_chunk == self.per_chunk || self.lines.len() == self.total {
                cut = tx.send(Ok(std::mem::take(&mut chunk))).await.is_err();
                in_chunk = 0;
            }
        }
        if !cut {
            let _ = tx.send(Ok("{\"end\":{\"status\":\"completed\"}}\n".into())).await;
        }
        drop(tx);
        match response.await {
            Ok(Ok(r)) if r.status().is_success() && !cut => {
                let v = r.json::<Value>().await.unwrap_or(Value::Null);
                Ok(v["last_seq"].as_u64())
            }
            Ok(Ok(r)) => Err(format!("{} {}", r.status(), r.text().await.unwrap_or_default())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}
