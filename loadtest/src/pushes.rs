//! Push to devices that are offline (issue 11): `push_offline` notifications of priority
//! `high`, each to a user with no endpoint, to a gateway whose `GATEWAY_PUSH_WEBHOOK_URL` is
//! this run's [`webhook`](crate::webhook) receiver. Every one must arrive exactly once, signed
//! and keyed, including those whose first attempt the receiver refuses; anything else is a
//! violation (`push`).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checker::Kind;
use crate::ctx::SharedCtx;
use crate::stats::Stats;
use crate::webhook::Receiver;

/// Requests in flight at once.
const IN_FLIGHT: usize = 64;

pub async fn run(ctx: SharedCtx) -> anyhow::Result<()> {
    let s = &ctx.scenario;
    anyhow::ensure!(
        !s.webhook_secret.is_empty(),
        "push_offline needs webhook_secret (the gateway's GATEWAY_PUSH_WEBHOOK_SECRET)"
    );
    let receiver = Receiver::start(&s.webhook_listen, &s.webhook_secret, s.webhook_refuse).await?;
    let n = s.push_offline;
    let producer: Arc<str> = Arc::from(ctx.tokens.producer()?);
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut sends = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let (ctx, producer, limit) = (ctx.clone(), producer.clone(), limit.clone());
        sends.spawn(async move {
            let _p = limit.acquire().await;
            let body = json!({
                "user_id": format!("{}-off{i}", ctx.run),
                "category": "alerts",
                "priority": "high",
                "title": "offline",
                "body": "pushed",
            });
            let url = format!("{}/v1/notifications", ctx.base(i as usize));
            match ctx.http.post(url).bearer_auth(&*producer).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                other => {
                    Stats::add(&ctx.stats.http_errors, 1);
                    eprintln!("push notification {i}: {other:?}");
                }
            }
        });
    }
    while sends.join_next().await.is_some() {}
    let sent_in = started.elapsed();
    let c = &receiver.counts;
    let deadline = Instant::now() + Duration::from_secs_f64(s.settle_s);
    while c.accepted.load(Relaxed) < n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late duplicates would come with the next retry round: wait one more second for them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    report(&ctx, &receiver, n, sent_in);
    Ok(())
}

fn report(ctx: &SharedCtx, r: &Receiver, n: u32, sent_in: Duration) {
    let c = &r.counts;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
    let mut lat = c.latencies_ms.lock().clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "push               {n} offline notifications sent in {:.0} ms; webhook: {} accepted, {} refused first and {} retried with their key, {} duplicates after a 2xx, {} bad signatures, {} without key; push latency p50 {:.0} ms, p99 {:.0} ms",
        sent_in.as_secs_f64() * 1000.0,
        g(&c.accepted),
        g(&c.refused),
        g(&c.retried),
        g(&c.duplicates),
        g(&c.bad_signatures),
        g(&c.missing_keys),
        pct(0.5),
        pct(0.99),
    );
    let missing = (n as u64).saturating_sub(g(&c.accepted));
    let bad = missing + g(&c.duplicates) + g(&c.bad_signatures) + g(&c.missing_keys);
    if bad > 0 {
        ctx.violations.record(Kind::Push, bad, || {
            format!(
                "{missing} never pushed, {} twice, {} badly signed, {} without key",
                g(&c.duplicates),
                g(&c.bad_signatures),
                g(&c.missing_keys)
            )
        });
    }
}
