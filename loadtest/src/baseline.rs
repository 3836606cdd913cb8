//! The yardstick for throughput: a bare tokio-tungstenite server that fans the same delta frames
//! out to every connection as fast as the sockets take them: no auth, no log, no checks. Run in
//! its own process (like the gateway), driven by clients in this one; the ratio of the gateway's
//! saturated delivery rate to this one says what the gateway's work costs.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use wire::ServerFrame;

use crate::checker::{self, EndpointCheck, Ledger, Violations};

#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    /// Connections to fan out to.
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Frames sent to every connection.
    #[arg(long, default_value_t = 2000)]
    pub events: usize,
    /// Bytes of delta text per frame (as the load scenarios' token_bytes).
    #[arg(long, default_value_t = 16)]
    pub token_bytes: usize,
}

/// A frame shaped like the gateway's `turn.delta`.
fn frame(seq: usize, token_bytes: usize) -> String {
    let text = format!("{:012}|{}", seq, "x".repeat(token_bytes.saturating_sub(13)));
    format!(
        r#"{{"seq":{seq},"type":"turn.delta","turn_id":"lt0000-0-0","index":{seq},"text":"{text}"}}"#
    )
}

/// The bare server (a child process): waits for `connections`, then sends `events` frames to
/// each through per-connection queues, each connection's task writing with one flush per batch.
pub async fn serve(args: BaselineArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(8192);
        let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await?;
        let (tx, mut rx) = mpsc::channel::<Message>(1024);
        queues.push(tx);
        tasks.push(tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if ws.feed(m).await.is_err() {
                    return;
                }
                while let Ok(m) = rx.try_recv() {
                    if ws.feed(m).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    for seq in 1..=args.events {
        let m = Message::text(frame(seq, args.token_bytes));
        for q in &queues {
            q.send(m.clone()).await?;
        }
    }
    drop(queues);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Starts the bare server as a child, connects the clients, and returns deliveries per second.
pub async fn run(args: BaselineArgs) -> anyhow::Result<f64> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut child = Command::new(std::env::current_exe()?)
        .args(["baseline-server", "--connections", &args.connections.to_string()])
        .args([
            "--events",
            &args.events.to_string(),
            "--token-bytes",
            &args.token_bytes.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let first = BufReader::new(stdout).lines().next_line().await?.unwrap_or_default();
    let addr = first
        .strip_prefix("listening on http://")
        .ok_or_else(|| anyhow::anyhow!("unexpected {first:?}"))?
        .to_owned();
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("ws://{addr}/"),
            Some(config),
            true,
        )
        .await?;
        clients.push(ws);
    }
    // The clients do what `loadtest run`'s endpoints do with each event (parse, hash, check
    // against the other devices), so the two rates differ by the server's work only.
    let violations = std::sync::Arc::new(Violations::default());
    let ledger = std::sync::Arc::new(Ledger::default());
    let started = Instant::now();
    let mut readers = Vec::new();
    for mut ws in clients {
        let events = args.events;
        let mut check = EndpointCheck::new(0, violations.clone(), ledger.clone());
        check.on_hello("baseline", 0, false, false);
        readers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < events {
                match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        if let Ok(ServerFrame::Event(ev)) = ServerFrame::parse(t.as_str()) {
                            check.on_event(&ev, checker::hash(t.as_str()), Instant::now());
                        }
                        n += 1;
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            check.finish();
            n
        }));
    }
    let mut delivered = 0;
    for r in readers {
        delivered += r.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = child.wait().await;
    anyhow::ensure!(
        delivered == args.connections * args.events,
        "the bare server lost frames: {delivered}"
    );
    anyhow::ensure!(violations.total() == 0, "checker: {:?}", violations.examples());
    Ok(delivered as f64 / secs)
}
