//! The tasks scenario (issue 12): `tasks` long tasks, one per user in turn, each a status change
//! then `tokens_per_turn` artifact chunks at `token_rate` (one streamed NDJSON request, as an
//! agent would write them) then `completed`. Every device checks its log as usual (no loss, no
//! repeat, in order, across chaos reconnects); `a2a_followers` of the tasks are also followed
//! over A2A `SubscribeToTask`, dropped at `chaos_rate` per second and resumed with
//! `Last-Event-ID`: each chunk must arrive exactly once, in order, then the terminal update.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::checker::Kind;
use crate::ctx::SharedCtx;
use crate::stats::Stats;
use crate::tokens::user_id;

/// What the A2A followers saw.
#[derive(Default)]
struct Follow {
    updates: AtomicU64,
    resumes: AtomicU64,
    /// Chunks missing, repeated or out of order, and streams that never ended.
    violations: AtomicU64,
    finished: AtomicU64,
}

pub async fn run(ctx: SharedCtx) -> anyhow::Result<()> {
    let s = &ctx.scenario;
    let producer: Arc<str> = Arc::from(ctx.tokens.producer()?);
    let follow = Arc::new(Follow::default());
    let mut work = JoinSet::new();
    let started = std::time::Instant::now();
    for n in 0..s.tasks {
        let (ctx, producer, follow) = (ctx.clone(), producer.clone(), follow.clone());
        // Spread the starts over a second, as independent agents would.
        let delay = Duration::from_secs_f64(rand::rng().random_range(0.0..1.0));
        work.spawn(async move {
            tokio::time::sleep(delay).await;
            let user = n % ctx.scenario.users;
            let task_id = format!("{}-k{n}", ctx.run);
            if !create(&ctx, &producer, user, &task_id).await {
                return;
            }
            let follower = (n < ctx.scenario.a2a_followers).then(|| {
                let (ctx, follow, task_id) = (ctx.clone(), follow.clone(), task_id.clone());
                tokio::spawn(async move { follow_task(&ctx, &follow, user, &task_id).await })
            });
            stream(&ctx, &producer, user, &task_id).await;
            if let Some(f) = follower {
                let _ = f.await;
            }
        });
    }
    while work.join_next().await.is_some() {}
    let f = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "tasks              {} tasks × {} chunks in {:.1} s; A2A: {} followed, {} finished, {} updates, {} resumes, {} violations",
        s.tasks,
        s.tokens_per_turn,
        started.elapsed().as_secs_f64(),
        s.a2a_followers.min(s.tasks),
        f(&follow.finished),
        f(&follow.updates),
        f(&follow.resumes),
        f(&follow.violations),
    );
    let bad = f(&follow.violations);
    if bad > 0 {
        ctx.violations.record(Kind::A2aUpdate, bad, || format!("{bad} A2A follower violations"));
    }
    Ok(())
}

async fn create(ctx: &SharedCtx, producer: &str, user: u32, task_id: &str) -> bool {
    let body = json!({"user_id": user_id(user), "context_id": format!("lc{user}"), "title": "load", "task_id": task_id});
    let r = ctx
        .http
        .post(format!("{}/v1/tasks", ctx.base(user as usize)))
        .bearer_auth(producer)
        .json(&body)
        .send()
        .await;
    match r {
        Ok(r) if r.status().is_success() => {
            let v: Value = r.json().await.unwrap_or_default();
            Stats::add(&ctx.stats.published, 1);
            if let Some(seq) = v["seq"].as_u64() {
                ctx.saw_head(user, seq);
            }
            true
        }
        other => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("create task {task_id}: {other:?}");
            false
        }
    }
}

/// The task's items, one request streamed at the token rate.
async fn stream(ctx: &SharedCtx, producer: &str, user: u32, task_id: &str) {
    let s = &ctx.scenario;
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(16);
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) });
    let url = format!("{}/v1/tasks/{task_id}/events", ctx.base(user as usize + 1));
    let request = ctx
        .http
        .post(url)
        .bearer_auth(producer)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let response = tokio::spawn(request);
    let pad = "x".repeat(s.token_bytes.saturating_sub(20) as usize);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / s.token_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut lines = vec![json!({"status": {"state": "working"}}).to_string()];
    for i in 0..s.tokens_per_turn {
        tick.tick().await;
        // The text starts with the send time (the endpoints' delivery latency) and the index.
        let text = format!("{:012}|{i}|{pad}", ctx.now_us());
        let chunk =
            json!({"artifact": {"artifact_id": "out", "parts": [{"text": text}], "append": i > 0}});
        lines.push(chunk.to_string());
        if tx.send(Ok(lines.drain(..).map(|l| l + "\n").collect())).await.is_err() {
            break;
        }
        Stats::add(&ctx.stats.published, 1);
    }
    let _ = tx.send(Ok(format!("{}\n", json!({"status": {"state": "completed"}})))).await;
    drop(tx);
    match response.await {
        Ok(Ok(r)) if r.status().is_success() => {
            let v: Value = r.json().await.unwrap_or_default();
            Stats::add(&ctx.stats.published, 2);
            if let Some(seq) = v["last_seq"].as_u64() {
                ctx.saw_head(user, seq);
            }
        }
        other => {
            Stats::add(&ctx.stats.http_errors, 1);
            eprintln!("task {task_id} events: {other:?}");
        }
    }
}

/// Follows one task over A2A until its terminal update, dropping and resuming at the chaos
/// rate; counts what breaks the once-in-order rule.
async fn follow_task(ctx: &SharedCtx, f: &Follow, user: u32, task_id: &str) {
    let Ok(token) = ctx.tokens.user(user) else { return };
    let (mut next, mut last_id): (u64, Option<String>) = (0, None);
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs_f64(ctx.scenario.settle_s + 60.0);
    while tokio::time::Instant::now() < deadline {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SubscribeToTask", "params": {"id": task_id}});
        let mut req = ctx
            .http
            .post(format!("{}/a2a", ctx.base(user as usize)))
            .bearer_auth(&token)
            .json(&body);
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
            f.resumes.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(resp) = req.send().await else { continue };
        let mut bytes = resp.bytes_stream();
        let mut buf = Vec::new();
        // Drop at the chaos rate: each second, with that probability.
        let hold = match ctx.scenario.chaos_rate {
            r if r > 0.0 => Duration::from_secs_f64(rand::rng().random_range(0.0..(2.0 / r))),
            _ => Duration::from_secs(3600),
        };
        let cut = tokio::time::sleep(hold);
        tokio::pin!(cut);
        loop {
            let chunk = tokio::select! {
                c = bytes.next() => c,
                _ = &mut cut => break,
            };
            let Some(Ok(chunk)) = chunk else { break };
            buf.extend_from_slice(&chunk);
            while let Some(at) = buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = buf.drain(..at + 2).collect();
                match on_frame(f, &String::from_utf8_lossy(&frame), &mut next, &mut last_id) {
                    Some(true) => {
                        f.finished.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Some(false) => {}
                    None => return,
                }
            }
        }
    }
    f.violations.fetch_add(1, Ordering::Relaxed);
    eprintln!("A2A follower of {task_id}: no terminal update");
}

/// One SSE frame: `Some(true)` at the terminal update, `None` when the stream is an error.
fn on_frame(f: &Follow, frame: &str, next: &mut u64, last_id: &mut Option<String>) -> Option<bool> {
    let mut data = None;
    for line in frame.lines() {
        if let Some(id) = line.strip_prefix("id: ") {
            *last_id = Some(id.to_owned());
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = serde_json::from_str::<Value>(d).ok();
        }
    }
    let Some(v) = data else { return Some(false) };
    let r = &v["result"];
    if r.is_null() {
        eprintln!("A2A follower: {v}");
        f.violations.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    f.updates.fetch_add(1, Ordering::Relaxed);
    let texts: Vec<&str> = match (r.get("task"), r.get("artifactUpdate")) {
        (Some(t), _) => t["artifacts"][0]["parts"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["text"].as_str()).collect())
            .unwrap_or_default(),
        (_, Some(a)) => a["artifact"]["parts"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["text"].as_str()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if r.get("task").is_some() {
        *next = 0;
    }
    for t in texts {
        let i = t.split('|').nth(1).and_then(|i| i.parse::<u64>().ok());
        if i != Some(*next) {
            f.violations.fetch_add(1, Ordering::Relaxed);
            eprintln!("A2A follower: chunk {i:?} where {next} was due");
        }
        *next = i.unwrap_or(*next) + 1;
    }
    let state =
        r["statusUpdate"]["status"]["state"].as_str().or(r["task"]["status"]["state"].as_str());
    Some(state.is_some_and(|s| {
        matches!(s, "TASK_STATE_COMPLETED" | "TASK_STATE_FAILED" | "TASK_STATE_CANCELED")
    }))
}
