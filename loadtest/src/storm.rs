//! The notification storm (issue 11): `notify_storm` notifications to one user within about a
//! second, over five categories and every priority, against preferences that disable one
//! category and hold the low ones of another. The user's devices must stay connected and get
//! exactly what was delivered (the checker's usual zero-loss checks); the dispositions and the
//! rate the gateway accepted them at are printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checker;
use crate::ctx::SharedCtx;
use crate::stats::Stats;
use crate::tokens::user_id;

/// Requests in flight at once.
const IN_FLIGHT: usize = 64;
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "critical"];

/// Counts of each disposition, in the order delivered, held, digested, suppressed.
#[derive(Default)]
struct Dispositions([AtomicU64; 4]);

impl Dispositions {
    fn add(&self, d: &str) {
        let at = match d {
            "delivered" => 0,
            "held" => 1,
            "digested" => 2,
            _ => 3,
        };
        self.0[at].fetch_add(1, Ordering::Relaxed);
    }
}

pub async fn run(ctx: SharedCtx) -> anyhow::Result<()> {
    let n = ctx.scenario.notify_storm;
    let producer: Arc<str> = Arc::from(ctx.tokens.producer()?);
    let prefs = json!({"categories": {"s3": {"enabled": false}, "s1": {"min_priority": "normal"}}});
    let r = ctx
        .http
        .put(format!("{}/v1/users/{}/preferences", ctx.base(0), user_id(0)))
        .bearer_auth(ctx.tokens.user(0)?)
        .json(&prefs)
        .send()
        .await?;
    if !r.status().is_success() {
        // A gateway without v1.1 preferences (the Node peer) takes the storm unfiltered.
        eprintln!("storm: preferences not set ({}); every notification is delivered", r.status());
    }
    let counts = Arc::new(Dispositions::default());
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let (ctx, producer, counts, limit) =
            (ctx.clone(), producer.clone(), counts.clone(), limit.clone());
        tasks.spawn(async move {
            let _p = limit.acquire().await;
            let body = json!({
                "user_id": user_id(0),
                "category": format!("s{}", i % 5),
                "priority": PRIORITIES[(i / 5) as usize % 4],
                "title": checker::notification_title(0),
                "body": "storm",
                "data": {"sent_us": ctx.now_us()},
            });
            let url = format!("{}/v1/notifications", ctx.base(i as usize));
            match ctx.http.post(url).bearer_auth(&*producer).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    counts.add(v["disposition"].as_str().unwrap_or(""));
                    if let Some(seq) = v["seq"].as_u64() {
                        Stats::add(&ctx.stats.notifications_sent, 1);
                        Stats::add(&ctx.stats.published, 1);
                        ctx.saw_head(0, seq);
                    }
                }
                other => {
                    Stats::add(&ctx.stats.http_errors, 1);
                    eprintln!("storm notification {i}: {other:?}");
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let c = |i: usize| counts.0[i].load(Ordering::Relaxed);
    println!(
        "storm              {n} notifications in {:.0} ms ({:.0} accepted/s): delivered {}, held {}, digested {}, suppressed {}",
        secs * 1000.0,
        n as f64 / secs,
        c(0),
        c(1),
        c(2),
        c(3)
    );
    Ok(())
}
