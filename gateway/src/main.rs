//! `gateway [--config FILE] [--dev]`: read settings, set up logs, bind, serve, drain.
//! `gateway genconfig` prints a commented TOML of every setting with its default;
//! `gateway check-config [--config FILE]` validates settings as start-up does, without binding.

use std::io::Write;
use std::path::PathBuf;

/// mimalloc: 7–18 % less CPU per delivered event than glibc's allocator at paced load (embedded
/// and Redis mode), tuned in `tune_allocator` so an idle endpoint
/// costs no more memory (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use config::{Config, EXIT_USAGE, LogFormat};
use gateway::auth::{self, Verifier};
use gateway::state::AppState;

#[derive(Parser)]
#[command(version, about = "Streaming gateway: WebSocket/SSE fan-out of per-user event logs")]
struct Args {
    /// TOML file of settings (keys as the GATEWAY_* variables, lower case, without the prefix).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Development mode: a random secret when none is set, any Origin, sample tokens printed.
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Prints a commented TOML of every setting with its default.
    Genconfig,
    /// Validates the file (--config) merged with the environment exactly as start-up does,
    /// without binding; exits 64 naming each bad setting.
    CheckConfig,
}

fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("gateway: {message}");
    std::process::exit(EXIT_USAGE);
}

/// mimalloc's settings for many small idle connections: memory given back at once and arenas
/// committed as used, not up front (with its defaults an idle endpoint cost 5.7 KB instead of
/// 4.8). It reads them from the environment when the process loads, before `main` (set later,
/// the first arena is already committed), so a process started without them runs itself again
/// with them; an operator's own `MIMALLOC_*` values are kept.
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    const SETTINGS: [(&str, &str); 2] =
        [("MIMALLOC_ARENA_EAGER_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "0")];
    if SETTINGS.iter().all(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut again = std::process::Command::new(exe);
    again.args(std::env::args_os().skip(1));
    for (k, v) in SETTINGS {
        if std::env::var_os(k).is_none() {
            again.env(k, v);
        }
    }
    // Returns only if the binary could not be run again (replaced on disk, say).
    let e = again.exec();
    eprintln!("gateway: running with mimalloc's default settings (cannot re-execute: {e})");
}

fn main() {
    tune_allocator();
    let args = Args::parse();
    if let Some(Cmd::Genconfig) = args.command {
        print!("{}", config::genconfig());
        return;
    }
    let cfg = Config::load(args.config.as_deref(), std::env::vars(), args.dev)
        .unwrap_or_else(|e| usage_error(e));
    if let Some(Cmd::CheckConfig) = args.command {
        if let Err(e) = Verifier::from_config(&cfg) {
            usage_error(e);
        }
        println!("configuration ok");
        return;
    }
    let _traces = gateway::telemetry::init(cfg.log_format == LogFormat::Json);
    if cfg.outbound_queue != Config::default().outbound_queue {
        tracing::warn!(
            "GATEWAY_OUTBOUND_QUEUE is retired and does nothing: an endpoint that falls behind \
             reads on from the log (PROTOCOL.md v1.1, Backpressure)"
        );
    }
    for name in &cfg.unknown_variables {
        tracing::warn!(variable = %name, "unknown GATEWAY_ variable ignored (a typo?)");
    }
    let verifier = Verifier::from_config(&cfg).unwrap_or_else(|e| usage_error(e));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| {
            eprintln!("gateway: cannot start the runtime: {e}");
            std::process::exit(1)
        });
    if let Err(e) = runtime.block_on(run(cfg, verifier)) {
        eprintln!("gateway: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cfg: Config, verifier: Verifier) -> anyhow::Result<()> {
    let parts = gateway::setup::parts(&cfg).await?;
    let state = AppState::new(&cfg, verifier, parts);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("GATEWAY_LISTEN: cannot bind {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        if cfg.dev {
            print_dev_tokens(&mut out, &cfg)?;
        }
        out.flush()?;
    }
    tracing::info!(%addr, node_id = %cfg.node_id, mode = state.backplane.mode(), "serving");
    gateway::server::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

fn print_dev_tokens(out: &mut impl Write, cfg: &Config) -> std::io::Result<()> {
    let Some(secret) = &cfg.auth_hs256_secret else { return Ok(()) };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let user = wire::Claims::new("dev-user", now, 86_400);
    let producer =
        wire::Claims::new("dev-producer", now, 86_400).with_scope("gateway.publish gateway.admin");
    writeln!(out, "dev user token (sub=dev-user, 24 h): {}", auth::sign_hs256(secret, &user))?;
    writeln!(
        out,
        "dev producer token (scope gateway.publish gateway.admin, 24 h): {}",
        auth::sign_hs256(secret, &producer)
    )
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}
