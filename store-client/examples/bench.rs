//! Store benchmark: turns persisted per second, and history-page latency (p50/p99) in a
//! conversation of 10,000 turns, for the embedded store and PostgreSQL side by side in one run.
//!
//!     cargo run --release -p store-client --example bench [-- TURNS WRITERS]
//!
//! PostgreSQL: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres, in a schema of
//! its own that is dropped afterwards. Its pages are read twice: right after the load, before
//! the server has statistics on the new rows, and after `ANALYZE` (what autovacuum does within a
//! minute, so the steady state of a real store).

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_client::{EmbeddedStore, PostgresStore, TurnStore, contract};

const PAGE: u32 = 50;

/// Writes `turns` turns of one conversation with `writers` concurrent writers (as the outbox
/// workers of several nodes would); returns turns per second.
async fn write(store: &Arc<dyn TurnStore>, turns: usize, writers: usize) -> f64 {
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
    turns as f64 / started.elapsed().as_secs_f64()
}

/// Walks the whole conversation page by page as its user, twice; returns (p50, p99, pages).
async fn read(store: &Arc<dyn TurnStore>) -> (f64, f64, usize) {
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
    (pct(0.5), pct(0.99), lat.len())
}

fn row(name: &str, per_second: Option<f64>, (p50, p99, pages): (f64, f64, usize)) {
    let rate = per_second.map_or("".to_owned(), |r| format!("{r:.0}"));
    println!("| {name} | {rate} | {p50:.2} | {p99:.2} | {pages} |");
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
    let embedded: Arc<dyn TurnStore> =
        Arc::new(EmbeddedStore::open(&dir).await.expect("embedded store"));
    let rate = write(&embedded, turns, writers).await;
    row("embedded (SQLite, WAL, full sync)", Some(rate), read(&embedded).await);
    std::fs::remove_dir_all(&dir).ok();

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("gwbench_{}", std::process::id());
    match PostgresStore::connect_in_schema(&url, Some(&schema)).await {
        Ok(pg) => {
            let pg: Arc<dyn TurnStore> = Arc::new(pg);
            let rate = write(&pg, turns, writers).await;
            row("PostgreSQL, right after the load", Some(rate), read(&pg).await);
            analyze(&url, &schema).await;
            row("PostgreSQL, analyzed", None, read(&pg).await);
        }
        Err(e) => println!("| PostgreSQL | unavailable: {e} | | | |"),
    }
    use sqlx::Executor;
    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .await;
    }
}

async fn analyze(url: &str, schema: &str) {
    use sqlx::Executor;
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    pool.execute(sqlx::AssertSqlSafe(format!("ANALYZE {schema}.turns"))).await.expect("analyze");
}
