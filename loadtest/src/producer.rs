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
    let token: Arc<str> = Arc::from(ctx.tokens.producer()?);
    let limit = Arc::new(Semaphore::new(256));
    let mut tasks = JoinSet::new();
    for user in 0..ctx.scenario.users {
        let (ctx, token, limit) = (ctx.clone(), token.clone(), limit.clone());
        tasks.spawn(async move {
            let _p = limit.acquire().await;
            notify(&ctx, &token, user).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
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
    });
    if let Some(r) = post(ctx, token, user as usize, "/v1/notifications", body).await
        && let Some(seq) = r["seq"].as_u64()
    {
        Stats::add(&ctx.stats.notifications_sent, 1);
        Stats::add(&ctx.stats.published, 1);
        ctx.saw_head(user, seq);
    }
}

async fn turn(ctx: &SharedCtx, token: &str, user: u32, n: u64) {
    let s = &ctx.scenario;
    let turn_id = checker::turn_id(&ctx.run, user, n);
    ctx.ledger.texts.insert(turn_id.clone(), String::new());
    let body = json!({
        "user_id": user_id(user),
        "conversation_id": format!("lc{user}"),
        "turn_id": turn_id,
        "meta": {"t0_us": ctx.now_us()},
    });
    // Started on one node, streamed through the next: a producer may call any node.
    let node = n as usize;
    let Some(created) = post(ctx, token, node, "/v1/turns", body).await else { return };
    Stats::add(&ctx.stats.turns_started, 1);
    Stats::add(&ctx.stats.published, 1);
    if let Some(seq) = created["seq"].as_u64() {
        ctx.saw_head(user, seq);
    }

    // The events request stays open while tokens are produced, a line each.
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(16);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) });
    let request = ctx
        .http
        .post(url(ctx, node + 1, &format!("/v1/turns/{turn_id}/events")))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let response = tokio::spawn(request);
    let pad = "x".repeat(s.token_bytes as usize - 13);
    let mut t = interval(Duration::from_secs_f64(1.0 / s.token_rate));
    t.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // Unpaced (saturation) runs put many lines in one chunk, as a real producer's buffered writer
    // would; paced runs send each token as it comes.
    let per_chunk = if s.token_rate >= UNPACED { 64 } else { 1 };
    let mut chunk = String::new();
    let mut in_chunk = 0;
    for i in 0..s.tokens_per_turn {
        t.tick().await;
        let text = format!("{:012}|{pad}", ctx.now_us());
        if let Some(mut so_far) = ctx.ledger.texts.get_mut(&turn_id) {
            so_far.push_str(&text);
        }
        chunk.push_str(&json!({"delta": text}).to_string());
        chunk.push('\n');
        in_chunk += 1;
        if in_chunk == per_chunk || i + 1 == s.tokens_per_turn {
            if tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                break;
            }
            Stats::add(&ctx.stats.published, in_chunk);
            in_chunk = 0;
        }
    }
    let _ = tx.send(Ok("{\"end\":{\"status\":\"completed\"}}\n".into())).await;
    drop(tx);
    match response.await {
        Ok(Ok(r)) if r.status().is_success() => {
            Stats::add(&ctx.stats.published, 1);
            if let Ok(v) = r.json::<Value>().await
                && let Some(seq) = v["last_seq"].as_u64()
            {
                ctx.saw_head(user, seq);
            }
        }
        Ok(Ok(r)) => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("turn {turn_id}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        other => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("turn {turn_id}: {:?}", other.err());
        }
    }
}
