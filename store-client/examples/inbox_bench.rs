//! Inbox benchmark (issue 11): a user with 100,000 notifications; the latency (p50/p99) of an
//! inbox page of 50 newest first with both counts, of the unread filter and of a category
//! filter, on the embedded store and PostgreSQL side by side in one run.
//!
//!     cargo run --release -p store-client --example inbox_bench [-- NOTIFICATIONS]
//!
//! PostgreSQL: `DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/postgres, in a schema of
//! its own that is dropped afterwards (analyzed after the load, as autovacuum would).

use std::sync::Arc;
use std::time::{Duration, Instant};

use store_client::{
    EmbeddedStore, InboxRecord, InboxStatus, Mark, Marked, PostgresStore, TurnStore,
};

const PAGE: u32 = 50;
const PAGES: usize = 100;
const WRITERS: usize = 8;

fn note(i: usize) -> InboxRecord {
    InboxRecord {
        id: format!("n{i:07}"),
        user_id: "heavy".into(),
        category: format!("c{}", i % 10),
        priority: "normal".into(),
        title: "a notification".into(),
        body: "with a body of some length, as they come".into(),
        data: serde_json::json!({"i": i}),
        created_at_ms: 1_700_000_000_000 + i as i64,
        disposition: "delivered".into(),
        seen_at_ms: None,
        read_at_ms: None,
        archived_at_ms: None,
    }
}

async fn fill(store: &Arc<dyn TurnStore>, n: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(WRITERS) {
                store.inbox_add(&note(i)).await.expect("add");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    // A third read: the unread filter has work to skip.
    let read: Vec<String> = (0..n).step_by(3).map(|i| format!("n{i:07}")).collect();
    for chunk in read.chunks(1_000) {
        store.inbox_mark("heavy", Marked::Ids(chunk), Mark::Read, 1).await.expect("mark");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// `PAGES` pages walked from the newest, each with both counts; (p50, p99) ms.
async fn walk(
    store: &Arc<dyn TurnStore>,
    status: InboxStatus,
    category: Option<&str>,
) -> (f64, f64) {
    let mut lat: Vec<Duration> = Vec::new();
    let mut before = None;
    for _ in 0..PAGES {
        let t0 = Instant::now();
        let rows =
            store.inbox_page("heavy", status, category, PAGE, before.clone()).await.expect("page");
        store.inbox_counts("heavy").await.expect("counts");
        lat.push(t0.elapsed());
        let Some(last) = rows.last() else { break };
        before = Some((last.created_at_ms, last.id.clone()));
    }
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    (pct(0.5), pct(0.99))
}

async fn report(name: &str, store: &Arc<dyn TurnStore>, rate: Option<f64>) {
    let all = walk(store, InboxStatus::All, None).await;
    let unread = walk(store, InboxStatus::Unread, None).await;
    let cat = walk(store, InboxStatus::All, Some("c7")).await;
    let rate = rate.map_or(String::new(), |r| format!("{r:.0}"));
    println!(
        "| {name} | {rate} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
        all.0, all.1, unread.0, unread.1, cat.0, cat.1
    );
}

#[tokio::main]
async fn main() {
    let n = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    println!(
        "one user with {n} notifications (a third read); {PAGES} pages of {PAGE}, each with both counts\n"
    );
    println!(
        "| store | added/s | page p50 / p99 ms | unread p50 / p99 ms | category p50 / p99 ms |\n|---|---|---|---|---|"
    );
    let dir = std::env::temp_dir().join(format!("inbox-bench-{}", std::process::id()));
    let embedded: Arc<dyn TurnStore> =
        Arc::new(EmbeddedStore::open(&dir).await.expect("embedded store"));
    let rate = fill(&embedded, n).await;
    report("embedded (SQLite)", &embedded, Some(rate)).await;
    std::fs::remove_dir_all(&dir).ok();

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("gwinbox_{}", std::process::id());
    use sqlx::Executor;
    match PostgresStore::connect_in_schema(&url, Some(&schema)).await {
        Ok(pg) => {
            let pg: Arc<dyn TurnStore> = Arc::new(pg);
            let rate = fill(&pg, n).await;
            if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                let _ = pool
                    .execute(sqlx::AssertSqlSafe(format!("ANALYZE {schema}.notifications")))
                    .await;
            }
            report("PostgreSQL (analyzed)", &pg, Some(rate)).await;
        }
        Err(e) => println!("| PostgreSQL | unavailable: {e} | | | |"),
    }
    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
        let _ = pool
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
            .await;
    }
}
