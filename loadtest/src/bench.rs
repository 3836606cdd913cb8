//! The standard scenarios, each run against a gateway process this command starts (and, when
//! given, the Node peer of `shared/peers/node-gateway`, so both are measured by the same client in
//! one run), written to a Markdown file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::report::Report;
use crate::runner::{self, RunOptions};
use crate::scenario::{Scenario, TokenArgs};
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

/// The named scenarios.
pub fn scenarios(scale: f64, duration: f64) -> Vec<(&'static str, &'static str, Scenario)> {
    let users = |n: f64| users_scaled(scale, n);
    let base = Scenario { duration_s: duration, ..Scenario::default() };
    let stream = |concurrent: f64| Scenario {
        users: users(1000.0),
        devices: 2,
        // 250 tokens at 50/s: 5 s turns, so `concurrent` turns stream at once after the ramp.
        tokens_per_turn: 250,
        token_rate: 50.0,
        // As a model's tokens come out of an orchestrator (and as the independent client sent).
        token_bytes: 64,
        turn_rate: concurrent * scale / 5.0,
        max_turns: (concurrent * scale).round() as u32,
        ..base.clone()
    };
    vec![
        (
            "idle",
            "10,000 WebSocket endpoints connected, held 5 s: memory per endpoint",
            Scenario {
                users: users(5000.0),
                devices: 2,
                duration_s: 0.0,
                hold_s: 5.0,
                ..base.clone()
            },
        ),
        (
            "stream20k",
            "2,000 endpoints (1,000 users × 2), 200 concurrent turns at 50 tokens/s (64-byte deltas, one NDJSON request per turn, each on its own jittered timer): 20,000 deliveries/s",
            stream(200.0),
        ),
        (
            "stream",
            "2,000 endpoints (1,000 users × 2), 500 concurrent turns at 50 tokens/s (as stream20k): 50,000 deliveries/s",
            stream(500.0),
        ),
        (
            "burst",
            "one notification to each of 1,000 users (2,000 endpoints) at once",
            Scenario {
                users: users(1000.0),
                devices: 2,
                burst: true,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "burstlog",
            "one turn of 3,000 deltas in one NDJSON write to each of 10 users × 2 devices (v1.1: no close)",
            Scenario {
                users: users(10.0),
                devices: 2,
                burst_deltas: 3000,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "storm",
            "10,000 notifications to one user (4 devices) as fast as taken, over categories and priorities her preferences filter",
            Scenario {
                users: 1,
                devices: 4,
                notify_storm: (10_000.0 * scale).round().max(1.0) as u32,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "tasks",
            "200 long tasks (100 users × 2 devices, a third over SSE), 200 chunks each at 20/s (10 s); 20 followed over A2A; devices and followers dropped and resumed at 20%/s",
            Scenario {
                users: users(100.0),
                devices: 2,
                sse_ratio: 0.34,
                tasks: users(200.0),
                a2a_followers: users(20.0),
                tokens_per_turn: 200,
                token_rate: 20.0,
                chaos_rate: 0.2,
                duration_s: 0.0,
                ..base.clone()
            },
        ),
        (
            "chaos",
            "stream20k with 5% of endpoints dropping and resuming every second",
            Scenario { chaos_rate: 0.05, ..stream(200.0) },
        ),
        (
            DRAIN_STORM,
            "Redis mode, 2 nodes: 10,000 endpoints (5,000 users × 2, one of each user's devices on each node) while turns stream; node 0 is drained 5 s in and every endpoint it held comes back on node 1 at once and resumes (the reconnect storm)",
            Scenario {
                users: users(5000.0),
                devices: 2,
                tokens_per_turn: 50,
                token_rate: 50.0,
                turn_rate: 20.0,
                max_turns: 40,
                drain_after_s: 5.0,
                ..base.clone()
            },
        ),
        (
            "saturate",
            "200 endpoints (20 users × 10 devices), 2,000 deltas per user sent unpaced: deliveries/s at saturation",
            Scenario {
                users: users(20.0),
                devices: 10,
                tokens_per_turn: SATURATE_TOKENS,
                token_rate: 100_000.0,
                turn_rate: 100_000.0,
                max_turns: users(20.0),
                duration_s: 0.05,
                ..base.clone()
            },
        ),
    ]
}

fn users_scaled(scale: f64, n: f64) -> u32 {
    ((n * scale).round() as u32).max(1)
}

/// Deltas per user in the saturation scenario; the bare fan-out sends as many frames (+2 for the
/// turn's start and end).
const SATURATE_TOKENS: u32 = 2000;

/// One scenario's results: name, description, and a report per target.
type ScenarioResults = (&'static str, &'static str, Vec<(&'static str, Report)>);
/// A row of the Markdown table: its label and how to read it off a report.
type Line = (&'static str, Box<dyn Fn(&Report) -> String>);

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
            let tokens = Tokens::from_args(
                &TokenArgs { secret: Some(SECRET.into()), token_file: None, tenants: 0 },
                3600,
            )?;
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
    let mut text = markdown(&results, &args);
    if let Some((_, _, row)) = results.iter().find(|(n, _, _)| *n == "saturate") {
        eprintln!("== bare tokio-tungstenite fan-out");
        let connections = (users_scaled(args.scale, 20.0) * 10) as usize;
        let bare = crate::baseline::run(crate::baseline::BaselineArgs {
            connections,
            events: SATURATE_TOKENS as usize + 2,
            token_bytes: 16,
        })
        .await?;
        text.push_str(&baseline_section(bare, connections, row));
    }
    std::fs::write(&args.out, text)?;
    eprintln!("wrote {}", args.out.display());
    Ok(clean)
}

fn baseline_section(bare: f64, connections: usize, row: &[(&str, Report)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "## saturation vs a bare tokio-tungstenite fan-out\n");
    let _ = writeln!(
        s,
        "`loadtest baseline`: a bare tokio-tungstenite server (its own process) fans the same frames"
    );
    let _ = writeln!(
        s,
        "out to {connections} connections, no auth, log or producer API; its clients do the same per-event"
    );
    let _ = writeln!(
        s,
        "checking as the load tester's. The gateway also ingests every event over HTTP from the same"
    );
    let _ = writeln!(s, "load process, so the ratio includes the producer side.\n");
    let _ = writeln!(s, "| server | deliveries/s | ratio to bare |\n|---|---|---|");
    let _ = writeln!(s, "| bare tokio-tungstenite fan-out | {bare:.0} | 1.00 |");
    for (t, r) in row {
        let _ =
            writeln!(s, "| {t} | {:.0} | {:.2} |", r.events_per_second, r.events_per_second / bare);
    }
    s
}

fn markdown(results: &[ScenarioResults], args: &BenchArgs) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `loadtest bench` (scale {}, {} s of load per streaming scenario). The gateway and the load",
        args.scale, args.duration
    );
    let _ = writeln!(
        s,
        "generator share one 2-core machine, so every figure includes the cost of the client: compare"
    );
    let _ = writeln!(
        s,
        "the columns of one run, not runs of different days. CPU and memory are read from the gateway's"
    );
    let _ = writeln!(
        s,
        "/proc entry; memory per endpoint is (RSS connected − RSS before) / endpoints.\n"
    );
    for (name, about, row) in results {
        let _ = writeln!(s, "## {name}\n\n{about}\n");
        let _ = write!(s, "| figure |");
        for (t, _) in row {
            let _ = write!(s, " {t} |");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "|---|{}", "---|".repeat(row.len()));
        let f = |v: Option<f64>, d: usize| v.map_or("n/a".to_owned(), |v| format!("{v:.d$}"));
        let lines: Vec<Line> = vec![
            (
                "endpoints connected",
                Box::new(|r: &Report| format!("{} / {}", r.connected, r.endpoints)),
            ),
            ("events delivered/s", Box::new(|r: &Report| format!("{:.0}", r.events_per_second))),
            (
                "delivery p50 / p99 / p99.9 ms",
                Box::new(|r: &Report| {
                    format!(
                        "{:.2} / {:.2} / {:.2}",
                        r.delivery.p50_ms, r.delivery.p99_ms, r.delivery.p999_ms
                    )
                }),
            ),
            ("first delta p99 ms", Box::new(|r: &Report| format!("{:.2}", r.first_delta.p99_ms))),
            ("device spread p99 ms", Box::new(|r: &Report| format!("{:.2}", r.spread.p99_ms))),
            ("resume p99 ms", Box::new(|r: &Report| format!("{:.2}", r.resume.p99_ms))),
            ("burst: last device ms", Box::new(move |r: &Report| f(r.burst_ms, 1))),
            (
                "drain → last endpoint resumed elsewhere ms (endpoints)",
                Box::new(|r: &Report| {
                    r.reconnect_storm.map_or("n/a".into(), |(ms, n)| format!("{ms:.0} ({n})"))
                }),
            ),
            (
                "closes by code (server-sent)",
                Box::new(|r: &Report| {
                    let c: Vec<String> =
                        r.closes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    if c.is_empty() { "none".into() } else { c.join(", ") }
                }),
            ),
            (
                "memory per endpoint (bytes)",
                Box::new(move |r: &Report| f(r.gateway.rss_per_endpoint_bytes, 0)),
            ),
            (
                "gateway CPU µs per delivered event (all nodes)",
                Box::new(move |r: &Report| f(r.gateway.cpu_us_per_event, 2)),
            ),
            (
                "redis-server CPU µs per delivered event",
                Box::new(move |r: &Report| f(r.gateway.backend_cpu_us_per_event, 2)),
            ),
            (
                "lost / duplicated / reordered / other",
                Box::new(|r: &Report| {
                    let g = |k| r.violations.get(&k).copied().unwrap_or(0);
                    use crate::checker::Kind::*;
                    format!(
                        "{} / {} / {} / {}",
                        g(Lost),
                        g(Duplicate),
                        g(Reordered),
                        r.violations_total - g(Lost) - g(Duplicate) - g(Reordered)
                    )
                }),
            ),
            ("all caught up", Box::new(|r: &Report| r.caught_up.to_string())),
        ];
        for (label, get) in &lines {
            let _ = write!(s, "| {label} |");
            for (_, r) in row {
                let _ = write!(s, " {} |", get(r));
            }
            let _ = writeln!(s);
        }
        for (label, of) in [
            ("CPU per delivered event ÷ the floor's", FLOOR),
            ("CPU per delivered event ÷ the Node peer's", "node peer"),
        ] {
            let Some(base) =
                row.iter().find(|(t, _)| *t == of).and_then(|(_, r)| r.gateway.cpu_us_per_event)
            else {
                continue;
            };
            let _ = write!(s, "| {label} |");
            for (_, r) in row {
                let _ = write!(s, " {} |", f(r.gateway.cpu_us_per_event.map(|c| c / base), 2));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }
    s
}
