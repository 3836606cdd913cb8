//! The standard scenarios, each run against a gateway process this command starts (and, when
//! given, the Node peer of `shared/peers/node-gateway`, so both are measured by the same client in
//! one run), written to a Markdown file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod markdown;
mod scenarios;

pub use scenarios::scenarios;

use crate::report::Report;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;
use crate::tokens::Tokens;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The gateway binary (default: `gateway` beside this executable).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// A directory holding the Node peer's server.js with its node_modules installed.
    #[arg(long)]
    pub node_peer: Option<PathBuf>,
    /// Only these scenarios (idle, stream20k, stream, burst, burstlog, storm, tasks, chaos, saturate); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Multiplies endpoint counts and turn rates (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Seconds of load per streaming scenario.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Markdown file to write.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Also write every report as JSON into this directory.
    #[arg(long)]
    pub json_dir: Option<PathBuf>,
    /// Also run this gateway in Redis mode (one node, and two nodes behind the same load
    /// client) on a private redis-server it starts.
    #[arg(long)]
    pub redis: bool,
}

/// The column of the paced floor server ([`crate::floor`]).
const FLOOR: &str = "floor (bare paced fan-out)";
/// The reconnect-storm scenario (Redis mode only).
const DRAIN_STORM: &str = "drainstorm";

pub(crate) const SECRET: &str = "loadtest-bench-secret-0123456789";

/// One scenario's results: name, description, and a report per target.
type ScenarioResults = (&'static str, &'static str, Vec<(&'static str, Report)>);
/// A gateway under test: one process, or several nodes sharing a redis-server.
struct Target {
    name: &'static str,
    nodes: Vec<Child>,
    redis: Option<Child>,
    /// The nodes' base URLs, comma-separated (as a scenario takes them).
    url: String,
}

/// How to start a target.
enum Kind {
    Process(Command),
    /// This many gateway nodes on a private redis-server.
    Redis(usize),
}

/// Starts a gateway (on a free port unless `cmd` sets `GATEWAY_LISTEN`); returns it and its URL.
pub(crate) async fn start_node(name: &str, mut cmd: Command) -> anyhow::Result<(Child, String)> {
    if !cmd.as_std().get_envs().any(|(k, _)| k == "GATEWAY_LISTEN") {
        cmd.env("GATEWAY_LISTEN", "127.0.0.1:0");
    }
    cmd.env("GATEWAY_AUTH_HS256_SECRET", SECRET)
        .env("GATEWAY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await??
        .unwrap_or_default();
    let url = first
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow::anyhow!("{name}: unexpected first line {first:?}"))?
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// A private redis-server on a free loopback port (nothing kept on disk).
async fn start_redis() -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("--redis needs redis-server on the PATH: {e}"))?;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((child, format!("redis://127.0.0.1:{port}/")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("redis-server did not listen on {port}")
}

impl Target {
    async fn start(
        name: &'static str,
        kind: Kind,
        gateway_bin: &PathBuf,
    ) -> anyhow::Result<Target> {
        match kind {
            Kind::Process(cmd) => {
                let (child, url) = start_node(name, cmd).await?;
                Ok(Target { name, nodes: vec![child], redis: None, url })
            }
            Kind::Redis(n) => {
                let (redis, redis_url) = start_redis().await?;
                let (mut nodes, mut urls) = (Vec::new(), Vec::new());
                for i in 0..n {
                    let mut cmd = Command::new(gateway_bin);
                    cmd.env("GATEWAY_REDIS_URL", &redis_url)
                        .env("GATEWAY_NODE_ID", format!("n{i}"));
                    let (child, url) = start_node(name, cmd).await?;
                    nodes.push(child);
                    urls.push(url);
                }
                Ok(Target { name, nodes, redis: Some(redis), url: urls.join(",") })
            }
        }
    }

    async fn stop(mut self) {
        for node in &mut self.nodes {
            if let Some(pid) = node.id() {
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            }
        }
        for node in &mut self.nodes {
            if tokio::time::timeout(Duration::from_secs(15), node.wait()).await.is_err() {
                let _ = node.kill().await;
            }
        }
        if let Some(mut r) = self.redis.take() {
            let _ = r.kill().await;
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<bool> {
    let gateway_bin = match &args.gateway_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("gateway"),
    };
    anyhow::ensure!(
        gateway_bin.exists(),
        "no gateway binary at {} (cargo build --release -p gateway)",
        gateway_bin.display()
    );
    let mut results: Vec<ScenarioResults> = Vec::new();
    let mut clean = true;
    for (name, about, scenario) in scenarios(args.scale, args.duration) {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        let mut row = Vec::new();
        let mut targets = vec![("rust (embedded)", Kind::Process(Command::new(&gateway_bin)))];
        if name == DRAIN_STORM {
            // A drain moves endpoints to another node: only Redis mode with two nodes has one.
            targets.clear();
        }
        if args.redis && name == DRAIN_STORM {
            targets.push(("rust (redis, 2 nodes)", Kind::Redis(2)));
        } else if args.redis {
            targets.push(("rust (redis, 1 node)", Kind::Redis(1)));
            targets.push(("rust (redis, 2 nodes)", Kind::Redis(2)));
        }
        // The floor carries only the paced streaming shapes (no SSE, resume or notifications).
        if name.starts_with("stream") {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("floor-server");
            targets.push((FLOOR, Kind::Process(c)));
        }
        if let Some(dir) = args.node_peer.as_ref().filter(|_| name != DRAIN_STORM) {
            let mut c = Command::new("node");
            c.arg("server.js").current_dir(dir);
            targets.push(("node peer", Kind::Process(c)));
        }
        if targets.is_empty() {
            eprintln!("== {name}: needs --redis; skipped");
            continue;
        }
        for (target_name, kind) in targets {
            eprintln!("== {name} on {target_name}");
            let target = Target::start(target_name, kind, &gateway_bin).await?;
            let sc = Scenario { url: target.url.clone(), ..scenario.clone() };
            let tokens = Tokens::minted(SECRET, 3600);
            let opts = RunOptions {
                gateway_pids: target.nodes.iter().filter_map(|c| c.id()).collect(),
                backend_pids: target.redis.iter().filter_map(|c| c.id()).collect(),
                progress: true,
            };
            let report = runner::run(sc, tokens, opts).await?;
            eprintln!("{}", report.table());
            clean &= report.clean();
            if let Some(dir) = &args.json_dir {
                std::fs::create_dir_all(dir)?;
                let file = format!("{name}-{}.json", target.name.split(' ').next().unwrap_or("x"));
                report.write_json(&dir.join(file))?;
            }
            target.stop().await;
            row.push((target_name, report));
        }
        results.push((name, about, row));
    }
    let mut text = markdown::markdown(&results, &args);
    if let Some((_, _, row)) = results.iter().find(|(n, _, _)| *n == "saturate") {
        eprintln!("== bare tokio-tungstenite fan-out");
        let connections = (scenarios::users_scaled(args.scale, 20.0) * 10) as usize;
        let bare = crate::baseline::run(crate::baseline::BaselineArgs {
            connections,
            events: scenarios::SATURATE_TOKENS as usize + 2,
            token_bytes: 16,
        })
        .await?;
        text.push_str(&markdown::baseline_section(bare, connections, row));
    }
    std::fs::write(&args.out, text)?;
    eprintln!("wrote {}", args.out.display());
    Ok(clean)
}
