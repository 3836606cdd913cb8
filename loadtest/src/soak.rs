//! `loadtest soak`: a long, bounded run of chaos traffic across two Redis-mode nodes while the
//! things operators fear happen on a schedule: Redis restarts, a node is `kill -9`ed, the store
//! goes away for half a minute, a node drains. Every event is checked as in `run` (zero
//! violations is the bar); each node's memory and descriptors and the outbox depth are sampled
//! every few seconds and drawn, so a leak shows as a slope. Not part of CI: it runs minutes.
//!
//! Redis runs with an append-only file, as a production Redis holding logs would: a restart
//! keeps every user's log and epoch, so devices resume without loss across it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plotters::prelude::*;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::bench::{SECRET, start_node};
use crate::proxy::Proxy;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use crate::tokens::Tokens;

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Minutes of load (at most 60).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// The gateway binary (default: beside this one).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// The store's PostgreSQL (default `DATABASE_URL`, else the local server).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Where the samples (CSV), the plot (SVG) and the summary (Markdown) go.
    #[arg(long, default_value = "docs/soak")]
    pub out: PathBuf,
    /// Users, two devices each (a quarter over SSE).
    #[arg(long, default_value_t = 200)]
    pub users: u32,
}

/// One sample: minutes since the start, then per node RSS (MiB) and open descriptors, then the
/// outbox depth.
#[derive(Debug, Clone, Copy)]
struct Sample {
    minute: f64,
    rss: [f64; 2],
    fds: [f64; 2],
    outbox: f64,
}

/// The processes the schedule replaces, shared with the sampler.
struct Fleet {
    nodes: [Option<Child>; 2],
    listen: [String; 2],
    redis: Option<Child>,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(args.minutes > 0.0 && args.minutes <= 60.0, "--minutes is 0-60");
    let _ = rlimit::increase_nofile_limit(65_536);
    let bin = match &args.gateway_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("gateway"),
    };
    let work = std::env::temp_dir().join(format!("gw-soak-{:x}", rand::random::<u32>()));
    std::fs::create_dir_all(&work)?;
    let redis_port = free_port()?;
    let redis = start_redis(redis_port, &work).await?;
    let db = args.database_url.clone().or_else(|| std::env::var("DATABASE_URL").ok());
    let db = db.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut store_url = reqwest::Url::parse(&db)?;
    let upstream = tokio::net::lookup_host((
        store_url.host_str().unwrap_or("127.0.0.1"),
        store_url.port().unwrap_or(5432),
    ))
    .await?
    .next()
    .ok_or_else(|| anyhow::anyhow!("cannot resolve the database host"))?;
    let proxy = Proxy::start(upstream).await?;
    let _ = store_url.set_host(Some("127.0.0.1"));
    let _ = store_url.set_port(Some(proxy.addr.port()));
    let schema = format!("soak_{:x}", rand::random::<u32>());
    let node_env = NodeEnv {
        bin,
        redis: format!("redis://127.0.0.1:{redis_port}/"),
        store: store_url.to_string(),
        schema,
        work: work.clone(),
    };
    let listen = [format!("127.0.0.1:{}", free_port()?), format!("127.0.0.1:{}", free_port()?)];
    let a = node_env.start(0, &listen[0]).await?;
    let b = node_env.start(1, &listen[1]).await?;
    let fleet = Arc::new(Mutex::new(Fleet {
        nodes: [Some(a), Some(b)],
        listen: listen.clone(),
        redis: Some(redis),
    }));

    let scenario = Scenario {
        url: listen.iter().map(|l| format!("http://{l}")).collect::<Vec<_>>().join(","),
        users: args.users,
        devices: 2,
        sse_ratio: 0.25,
        duration_s: args.minutes * 60.0,
        turn_rate: 4.0,
        max_turns: 40,
        tokens_per_turn: 100,
        token_rate: 20.0,
        notification_rate: 5.0,
        chaos_rate: 0.02,
        ..Scenario::default()
    };
    let tokens = Tokens::minted(SECRET, 7200);
    let opts = RunOptions { gateway_pids: Vec::new(), backend_pids: Vec::new(), progress: false };
    let started = Instant::now();
    let load = tokio::spawn(runner::run(scenario, tokens, opts));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_every(fleet.clone(), samples.clone(), started));
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let events = schedule(&fleet, &node_env, &proxy, redis_port, &work, started, total).await;
    let report = load.await??;
    sampler.abort();
    let samples = samples.lock().clone();
    std::fs::create_dir_all(&args.out)?;
    write_csv(&args.out.join("soak.csv"), &samples)?;
    plot(&args.out.join("soak.svg"), &samples)?;
    let summary = summary(&args, &report, &samples, &events);
    std::fs::write(args.out.join("soak.md"), &summary)?;
    println!("{}\n{summary}", report.table());
    let mut fleet = fleet.lock();
    for n in fleet.nodes.iter_mut().flatten() {
        let _ = n.start_kill();
    }
    if let Some(r) = fleet.redis.as_mut() {
        let _ = r.start_kill();
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(report.clean())
}

/// What every node is started with.
struct NodeEnv {
    bin: PathBuf,
    redis: String,
    store: String,
    schema: String,
    work: PathBuf,
}

impl NodeEnv {
    async fn start(&self, i: usize, listen: &str) -> anyhow::Result<Child> {
        let mut cmd = Command::new(&self.bin);
        cmd.env("GATEWAY_LISTEN", listen)
            .env("GATEWAY_NODE_ID", format!("soak-{i}"))
            .env("GATEWAY_REDIS_URL", &self.redis)
            .env("GATEWAY_REDIS_PREFIX", "soak")
            .env("GATEWAY_STORE_URL", &self.store)
            .env("GATEWAY_STORE_SCHEMA", &self.schema)
            .env("GATEWAY_DATA_DIR", self.work.join(format!("node{i}")))
            .env("GATEWAY_OUTBOX_RETRY_MAX_MS", "5000")
            .env("GATEWAY_HEARTBEAT_MS", "5000")
            .env("GATEWAY_PRESENCE_TTL_MS", "10000");
        // Try a few times: the port of a node just killed may still be held for a moment.
        let mut last = None;
        for _ in 0..20 {
            let mut c = Command::new(&self.bin);
            for (k, v) in cmd.as_std().get_envs() {
                if let Some(v) = v {
                    c.env(k, v);
                }
            }
            match start_node(&format!("soak-{i}"), c).await {
                Ok((child, _)) => return Ok(child),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("node {i} did not start")))
    }
}

/// The faults, at fixed fractions of the run; returns what happened when (minutes).
async fn schedule(
    fleet: &Arc<Mutex<Fleet>>,
    env: &NodeEnv,
    proxy: &Proxy,
    redis_port: u16,
    work: &std::path::Path,
    started: Instant,
    total: Duration,
) -> Vec<(f64, String)> {
    let mut log = Vec::new();
    let at = |f: f64| started + total.mul_f64(f);
    let minute = || started.elapsed().as_secs_f64() / 60.0;

    tokio::time::sleep_until(at(0.2)).await;
    let old = fleet.lock().redis.take();
    if let Some(mut r) = old {
        signal(&r, "TERM").await;
        let _ = r.wait().await;
    }
    match start_redis(redis_port, work).await {
        Ok(r) => fleet.lock().redis = Some(r),
        Err(e) => eprintln!("soak: redis did not come back: {e}"),
    }
    log.push((minute(), "redis-server restarted (SIGTERM, same AOF)".to_owned()));

    tokio::time::sleep_until(at(0.4)).await;
    replace_node(fleet, env, 1, "KILL", Duration::from_secs(3)).await;
    log.push((minute(), "node 1 killed with SIGKILL, restarted 3 s later".to_owned()));

    tokio::time::sleep_until(at(0.6)).await;
    proxy.set_up(false);
    log.push((minute(), "store (PostgreSQL) cut off for 30 s".to_owned()));
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set_up(true);
    log.push((minute(), "store back".to_owned()));

    tokio::time::sleep_until(at(0.8)).await;
    replace_node(fleet, env, 0, "TERM", Duration::ZERO).await;
    log.push((minute(), "node 0 drained (SIGTERM) and restarted".to_owned()));
    log
}

/// Stops node `i` with `sig`, waits `pause`, starts it again on its address.
async fn replace_node(
    fleet: &Arc<Mutex<Fleet>>,
    env: &NodeEnv,
    i: usize,
    sig: &str,
    pause: Duration,
) {
    let (old, listen) = {
        let mut f = fleet.lock();
        (f.nodes[i].take(), f.listen[i].clone())
    };
    if let Some(mut n) = old {
        signal(&n, sig).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), n.wait()).await;
        let _ = n.start_kill();
    }
    tokio::time::sleep(pause).await;
    match env.start(i, &listen).await {
        Ok(n) => fleet.lock().nodes[i] = Some(n),
        Err(e) => eprintln!("soak: node {i} did not come back: {e}"),
    }
}

async fn signal(child: &Child, sig: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A redis-server on `port` keeping an append-only file in `dir` (a restart keeps the logs).
async fn start_redis(port: u16, dir: &std::path::Path) -> anyhow::Result<Child> {
    let dir = dir.join("redis");
    std::fs::create_dir_all(&dir)?;
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "everysec"])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("redis-server did not listen on {port}")
}

async fn sample_every(fleet: Arc<Mutex<Fleet>>, out: Arc<Mutex<Vec<Sample>>>, started: Instant) {
    let http = reqwest::Client::new();
    loop {
        let (pids, listen) = {
            let f = fleet.lock();
            (f.nodes.each_ref().map(|n| n.as_ref().and_then(Child::id)), f.listen.clone())
        };
        let mut s = Sample {
            minute: started.elapsed().as_secs_f64() / 60.0,
            rss: [0.0; 2],
            fds: [0.0; 2],
            outbox: f64::NAN,
        };
        for i in 0..2 {
            if let Some(pid) = pids[i] {
                s.rss[i] = rss_mib(pid);
                s.fds[i] =
                    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
            }
            if s.outbox.is_nan() {
                s.outbox = outbox_depth(&http, &listen[i]).await.unwrap_or(f64::NAN);
            }
        }
        out.lock().push(s);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn outbox_depth(http: &reqwest::Client, listen: &str) -> Option<f64> {
    let text = http.get(format!("http://{listen}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("gateway_outbox_depth "))
        .and_then(|v| v.trim().parse().ok())
}

fn write_csv(path: &std::path::Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut text =
        String::from("minute,rss_mib_node0,rss_mib_node1,fds_node0,fds_node1,outbox_depth\n");
    for s in samples {
        text.push_str(&format!(
            "{:.2},{:.1},{:.1},{},{},{}\n",
            s.minute, s.rss[0], s.rss[1], s.fds[0], s.fds[1], s.outbox
        ));
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Three panels over time: RSS per node, descriptors per node, outbox depth.
fn plot(path: &std::path::Path, samples: &[Sample]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((3, 1));
    let end = samples.last().map_or(1.0, |s| s.minute.max(0.1));
    type Pick = fn(&Sample) -> [f64; 2];
    let rows: [(&str, Pick); 3] = [
        ("RSS (MiB) per node", |s| s.rss),
        ("open descriptors per node", |s| s.fds),
        ("outbox depth", |s| [s.outbox, f64::NAN]),
    ];
    for (panel, (title, pick)) in panels.iter().zip(rows) {
        let top = samples.iter().flat_map(&pick).filter(|v| v.is_finite()).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.0..top * 1.15)?;
        chart.configure_mesh().x_desc("minutes").draw()?;
        for node in 0..2 {
            let points: Vec<(f64, f64)> = samples
                .iter()
                .map(|s| (s.minute, pick(s)[node]))
                .filter(|p| p.1.is_finite())
                .collect();
            if points.is_empty() {
                continue;
            }
            let color = Palette99::pick(node).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("node {node}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn summary(
    args: &SoakArgs,
    report: &crate::report::Report,
    samples: &[Sample],
    events: &[(f64, String)],
) -> String {
    let mut s = format!(
        "# Soak: {} min, {} users × 2 devices (¼ SSE), two Redis-mode nodes, PostgreSQL store\n\n\
         Command: `loadtest soak --minutes {}` (release build). Samples: `soak.csv`; plot: `soak.svg`.\n\n\
         ## Faults\n\n",
        args.minutes, args.users, args.minutes
    );
    for (minute, what) in events {
        s.push_str(&format!("- minute {minute:.1}: {what}\n"));
    }
    let third = samples.len() / 3;
    let mean =
        |xs: &[Sample], i: usize| xs.iter().map(|x| x.rss[i]).sum::<f64>() / xs.len().max(1) as f64;
    if third > 0 {
        let (first, last) = (&samples[..third], &samples[samples.len() - third..]);
        s.push_str(&format!(
            "\n## Memory\n\nMean RSS, first third → last third of the run: node 0 {:.1} → {:.1} MiB, \
             node 1 {:.1} → {:.1} MiB.\nDescriptors at the end: {} and {}. Largest outbox depth: {}.\n",
            mean(first, 0),
            mean(last, 0),
            mean(first, 1),
            mean(last, 1),
            samples.last().map_or(0.0, |x| x.fds[0]),
            samples.last().map_or(0.0, |x| x.fds[1]),
            samples.iter().map(|x| x.outbox).filter(|v| v.is_finite()).fold(0.0, f64::max),
        ));
    }
    s.push_str(&format!(
        "\n## Checked\n\nEvents {}; turns {}; notifications {}; reconnects {}; violations {} {:?}; \
         caught up: {}.\n",
        report.events,
        report.turns,
        report.notifications,
        report.reconnects,
        report.violations_total,
        report.violations,
        report.caught_up
    ));
    s
}
