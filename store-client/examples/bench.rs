//! Store benchmark: turns persisted per second, and history-page latency (p50/p99) in a
//! conversation of 10,000 turns, for the embedded store and PostgreSQL side by side in one run.
//!
//!     cargo run --release -p store-client --example bench [-- TURNS WRITERS]
//!
//! PostgreSQL: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres, in a schema of
//! its own that is dropped afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_client::{EmbeddedStore, PostgresStore, TurnStore, contract};

const PAGE: u32 = 50;

async fn run(name: &str, store: Arc<dyn TurnStore>, turns: usize, writers: usize) {
    // Writes: `writers` concurrent writers, as the outbox workers of several nodes would be.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..turns).step_by(writers) {
                let mut t =
                    contract::turn(&format!("b-{i:06}"), "bench", "u", 1_000_000 + i as i64);
                t.turn.text = "token ".repeat(100); // a 600-byte answer
                store.put(&t).await.expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let write_secs = started.elapsed().as_secs_f64();

    // Reads: walk the whole conversation page by page, twice, timing each page.
    let mut lat: Vec<Duration> = Vec::new();
    for _ in 0..2 {
        let mut cursor = None;
        loop {
            let t0 = Instant::now();
            let page = store.page("bench", Some("u"), PAGE, cursor.as_ref()).await.expect("page");
            lat.push(t0.elapsed());
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} |",
        turns as f64 / write_secs,
        pct(0.5),
        pct(0.99),
        lat.len()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let turns = args.first().copied().unwrap_or(10_000);
    let writers = args.get(1).copied().unwrap_or(8);
    println!(
        "{turns} turns of 600 bytes, {writers} concurrent writers, pages of {PAGE} newest first\n"
    );
    println!(
        "| store | turns persisted/s | page p50 ms | page p99 ms | pages read |\n|---|---|---|---|---|"
    );

    let dir = std::env::temp_dir().join(format!("store-bench-{}", std::process::id()));
    let embedded = EmbeddedStore::open(&dir).await.expect("embedded store");
    run("embedded (SQLite, WAL, full sync)", Arc::new(embedded), turns, writers).await;
    std::fs::remove_dir_all(&dir).ok();

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("gwbench_{}", std::process::id());
    match PostgresStore::connect_in_schema(&url, Some(&schema)).await {
        Ok(pg) => run("PostgreSQL", Arc::new(pg), turns, writers).await,
        Err(e) => println!("| PostgreSQL | unavailable: {e} | | | |"),
    }
    use sqlx::Executor;
    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .await;
    }
}
