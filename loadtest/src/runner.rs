//! One run: connect every endpoint, play the producer, wait for every endpoint to catch up,
//! then gather the figures and every violation into a [`Report`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checker::{Ledger, Violations};
use crate::ctx::{Ctx, SharedCtx};
use crate::gateway_probe;
use crate::report::{GatewayFigures, Report};
use crate::scenario::Scenario;
use crate::stats::{Percentiles, Stats};
use crate::tokens::Tokens;
use crate::{endpoint, producer};

/// Options of a run that are not part of the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The gateway's pids (one per node), to read memory and CPU from /proc.
    pub gateway_pids: Vec<u32>,
    /// Pids of what the gateway relies on (redis-server): their CPU is reported apart.
    pub backend_pids: Vec<u32>,
    /// Show a progress bar.
    pub progress: bool,
}

pub async fn run(scenario: Scenario, tokens: Tokens, opts: RunOptions) -> anyhow::Result<Report> {
    scenario.validate()?;
    // Thousands of sockets: lift our own descriptor limit rather than ask the user to.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let n = scenario.endpoints() as usize;
    let http = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(4096).build()?;
    let bases: Vec<String> = scenario.urls().iter().map(|u| u.to_string()).collect();
    let ws_bases = bases.iter().map(|u| u.replacen("http://", "ws://", 1)).collect();
    let ctx: SharedCtx = Arc::new(Ctx {
        run: format!("{:04x}", rand::random::<u16>()),
        origin: Instant::now(),
        stats: Stats::default(),
        violations: Arc::new(Violations::default()),
        ledger: Arc::new(Ledger::default()),
        heads: DashMap::new(),
        progress: (0..n).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicU64::new(0),
        stop: CancellationToken::new(),
        tokens,
        http: http.clone(),
        bases,
        ws_bases,
        scenario: scenario.clone(),
    });
    let bar = progress_bar(opts.progress, n as u64);
    let probe = |ctx: SharedCtx| {
        let pids = opts.gateway_pids.clone();
        async move { gateway_probe::read(&pids, &ctx.http, &ctx.bases).await }
    };
    let backend = || gateway_probe::from_procs(&opts.backend_pids);
    let before = probe(ctx.clone()).await;

    // Connect at the scenario's rate.
    let mut endpoints = JoinSet::new();
    let connect_started = Instant::now();
    let per_tick = (scenario.connect_rate / 100.0).ceil().max(1.0) as usize;
    for idx in 0..n {
        endpoints.spawn(endpoint::run(ctx.clone(), idx));
        if (idx + 1) % per_tick == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            bar.set_position(ctx.connected.load(Ordering::Relaxed));
        }
    }
    let connect_limit = Duration::from_secs_f64(30.0 + 2.0 * n as f64 / scenario.connect_rate);
    while (ctx.connected.load(Ordering::Relaxed) as usize) < n
        && connect_started.elapsed() < connect_limit
    {
        bar.set_position(ctx.connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = ctx.connected.load(Ordering::Relaxed);
    bar.set_position(connected);
    if scenario.hold_s > 0.0 {
        bar.set_message("holding");
        tokio::time::sleep(Duration::from_secs_f64(scenario.hold_s)).await;
    }
    let held = probe(ctx.clone()).await;
    let backend_held = backend();

    // Load.
    let started = Instant::now();
    let events_before = Stats::get(&ctx.stats.events);
    let resumes_before = ctx.stats.resume_count();
    let ticker = spawn_ticker(ctx.clone(), bar.clone());
    let drain = (scenario.drain_after_s > 0.0 && ctx.bases.len() > 1)
        .then(|| opts.gateway_pids.first().copied())
        .flatten()
        .map(|pid| spawn_drain(ctx.clone(), pid, scenario.drain_after_s));
    let mut burst_ms = None;
    if scenario.burst
        || scenario.burst_deltas > 0
        || scenario.notify_storm > 0
        || scenario.tasks > 0
        || scenario.push_offline > 0
    {
        if scenario.push_offline > 0 {
            crate::pushes::run(ctx.clone()).await?;
        } else if scenario.tasks > 0 {
            crate::tasks::run(ctx.clone()).await?;
        } else if scenario.notify_storm > 0 {
            crate::storm::run(ctx.clone()).await?;
        } else if scenario.burst_deltas > 0 {
            producer::burst_turns(ctx.clone()).await?;
        } else {
            producer::burst(ctx.clone()).await?;
        }
        wait_caught_up(&ctx, Duration::from_secs_f64(scenario.settle_s)).await;
        burst_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    } else if scenario.duration_s > 0.0 {
        producer::run(ctx.clone()).await?;
    }
    let load_elapsed = started.elapsed();
    let events_load = Stats::get(&ctx.stats.events) - events_before;
    let caught_up = wait_caught_up(&ctx, Duration::from_secs_f64(scenario.settle_s)).await;
    let window = started.elapsed();
    let events_window = Stats::get(&ctx.stats.events) - events_before;
    let after = probe(ctx.clone()).await;
    let backend_after = backend();
    ticker.abort();

    ctx.stop.cancel();
    while endpoints.join_next().await.is_some() {}
    bar.finish_and_clear();

    let s = &ctx.stats;
    // CPU seconds spent between two readings, and per event delivered in the window, in µs.
    let spent = |a: Option<f64>, b: Option<f64>| -> Option<f64> { Some(b? - a?) };
    let per_event = |seconds: Option<f64>| {
        seconds.filter(|_| events_window > 0).map(|c| c * 1e6 / events_window as f64)
    };
    let cpu = spent(held.cpu_seconds, after.cpu_seconds);
    let system = spent(held.system_seconds, after.system_seconds);
    let backend_cpu = spent(backend_held.cpu_seconds, backend_after.cpu_seconds)
        .filter(|_| !opts.backend_pids.is_empty());
    let rss_per_endpoint = match (before.rss_bytes, held.rss_bytes) {
        (Some(a), Some(b)) if connected > 0 => Some((b as f64 - a as f64) / connected as f64),
        _ => None,
    };
    let load_secs = load_elapsed.as_secs_f64().max(1e-9);
    let reconnect_storm = storm(&ctx, drain, resumes_before).await;
    Ok(Report {
        scenario,
        endpoints: n as u64,
        connected,
        caught_up,
        load_seconds: load_secs,
        window_seconds: window.as_secs_f64(),
        events: Stats::get(&s.events),
        events_per_second: events_load as f64 / load_secs,
        bytes_per_second: Stats::get(&s.bytes) as f64 / window.as_secs_f64().max(1e-9),
        published: Stats::get(&s.published),
        turns: Stats::get(&s.turns_started),
        notifications: Stats::get(&s.notifications_sent),
        delivery: Percentiles::of(&s.delivery.merged()),
        first_delta: Percentiles::of(&s.first_delta.merged()),
        gap: Percentiles::of(&s.gap.merged()),
        spread: Percentiles::of(&s.spread.merged()),
        connect: Percentiles::of(&s.connect.merged()),
        resume: Percentiles::of(&s.resume.merged()),
        http_errors: Stats::get(&s.http_errors),
        connect_errors: Stats::get(&s.connect_errors),
        reconnects: Stats::get(&s.reconnects),
        closes: s.closes.lock().clone(),
        violations: ctx.violations.counts(),
        violations_total: ctx.violations.total(),
        violation_examples: ctx.violations.examples(),
        burst_ms,
        reconnect_storm,
        gateway: GatewayFigures {
            rss_before: before.rss_bytes,
            rss_connected: held.rss_bytes,
            rss_after: after.rss_bytes,
            rss_per_endpoint_bytes: rss_per_endpoint,
            cpu_seconds: cpu,
            cpu_us_per_event: per_event(cpu),
            system_us_per_event: per_event(system),
            backend_cpu_us_per_event: per_event(backend_cpu),
        },
    })
}

/// Drains node `pid` (SIGTERM) `after_s` into the load; resolves with when (µs into the run).
fn spawn_drain(ctx: SharedCtx, pid: u32, after_s: f64) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs_f64(after_s)).await;
        let at = ctx.now_us();
        let _ =
            tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        at
    })
}

/// The reconnect storm a drain caused: its start to the last resumed `hello`, and the resumes.
/// A drain not due before the run ended is called off (no node is drained after measuring).
async fn storm(
    ctx: &SharedCtx,
    drain: Option<tokio::task::JoinHandle<u64>>,
    resumes_before: u64,
) -> Option<(f64, u64)> {
    let drain = drain?;
    if !drain.is_finished() {
        drain.abort();
        return None;
    }
    let at = drain.await.ok()?;
    let last = ctx.stats.resume_count().saturating_sub(resumes_before);
    let end = ctx.stats.last_resume_us.load(Ordering::Relaxed);
    Some((end.saturating_sub(at) as f64 / 1000.0, last))
}

/// Waits until every endpoint has every event the producer was told about; false on timeout.
async fn wait_caught_up(ctx: &SharedCtx, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let behind = (0..ctx.progress.len()).any(|i| {
            let head = ctx.heads.get(&ctx.user_of(i)).map_or(0, |h| *h);
            ctx.progress[i].load(Ordering::Relaxed) <= head
        });
        if !behind {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn progress_bar(show: bool, n: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} endpoints  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn spawn_ticker(ctx: SharedCtx, bar: ProgressBar) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = Stats::get(&ctx.stats.events);
        let mut t = tokio::time::interval(Duration::from_millis(500));
        loop {
            t.tick().await;
            let now = Stats::get(&ctx.stats.events);
            bar.set_message(format!(
                "{:.0} events/s  published {}  violations {}  reconnects {}",
                (now - last) as f64 * 2.0,
                Stats::get(&ctx.stats.published),
                ctx.violations.total(),
                Stats::get(&ctx.stats.reconnects),
            ));
            last = now;
        }
    })
}
