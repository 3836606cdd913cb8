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
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::bench::{SECRET, start_node};
use crate::proxy::Proxy;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use crate::tokens::Tokens;

mod record;

use record::{plot, sample_every, summary, write_csv};

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

/// The processes the schedule replaces, shared with the sampler.
struct Fleet {
    pub(super) nodes: [Option<Child>; 2],
    pub(super) listen: [String; 2],
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
