//! `loadtest run|bench`: see the crate docs and the README.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use loadtest::baseline::{self, BaselineArgs};
use loadtest::bench::{self, BenchArgs};
use loadtest::runner::{self, RunOptions};
use loadtest::scenario::{Scenario, ScenarioArgs, TokenArgs};
use loadtest::soak::{self, SoakArgs};
use loadtest::tokens::Tokens;

#[derive(Parser)]
#[command(
    version,
    about = "Load tester for the streaming gateway: devices, a producer, every event checked"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One scenario against a running gateway.
    Run {
        /// A TOML scenario; flags override it.
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[command(flatten)]
        flags: Box<ScenarioArgs>,
        #[command(flatten)]
        tokens: TokenArgs,
        /// The gateway's pid (repeat for several nodes): memory and CPU from /proc (else from
        /// their /metrics).
        #[arg(long)]
        gateway_pid: Vec<u32>,
        /// Pid of a process the gateway relies on (redis-server; repeatable): its CPU is reported
        /// apart.
        #[arg(long)]
        backend_pid: Vec<u32>,
        /// Write every figure as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the latency percentile curves as SVG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The standard scenarios against gateway processes it starts; writes docs/benchmarks.md.
    Bench(BenchArgs),
    /// Minutes of chaos traffic on two Redis-mode nodes through Redis restarts, a node killed,
    /// a store outage and a drain; memory and descriptors sampled and drawn.
    Soak(SoakArgs),
    /// Deliveries per second of a bare tokio-tungstenite fan-out of the same frames (the yardstick).
    Baseline(BaselineArgs),
    /// The bare fan-out server itself (started by `baseline`).
    #[command(hide = true)]
    BaselineServer(BaselineArgs),
    /// The floor for paced streaming (started by `bench`): just enough of the protocol for the
    /// stream scenarios, no auth, log or checks; prints `listening on http://…`.
    FloorServer,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let clean = match cli.cmd {
        Cmd::Run { scenario, flags, tokens, gateway_pid, backend_pid, json, plot, quiet } => {
            let mut s = match scenario {
                Some(path) => Scenario::from_file(&path)?,
                None => Scenario::default(),
            };
            flags.apply(&mut s);
            let ttl = (s.duration_s + s.hold_s + s.settle_s) as u64 + 3600;
            let tokens = Tokens::from_args(&tokens, ttl)?;
            let opts = RunOptions {
                gateway_pids: gateway_pid,
                backend_pids: backend_pid,
                progress: !quiet,
            };
            let report = runner::run(s, tokens, opts).await?;
            println!("{}", report.table());
            if let Some(path) = json {
                report.write_json(&path)?;
            }
            if let Some(path) = plot {
                report.plot(&path)?;
            }
            report.clean()
        }
        Cmd::Bench(args) => bench::run(args).await?,
        Cmd::Soak(args) => soak::run(args).await?,
        Cmd::Baseline(args) => {
            let rate = baseline::run(args.clone()).await?;
            println!(
                "bare tokio-tungstenite fan-out: {rate:.0} deliveries/s ({} connections × {} frames)",
                args.connections, args.events
            );
            true
        }
        Cmd::BaselineServer(args) => {
            baseline::serve(args).await?;
            true
        }
        Cmd::FloorServer => {
            loadtest::floor::serve().await?;
            true
        }
    };
    if !clean {
        eprintln!("loadtest: violations or incomplete delivery (see above)");
        std::process::exit(1);
    }
    Ok(())
}
