//! Both backends pass the same contract: the embedded store in a fresh directory, PostgreSQL
//! in a fresh schema of a real server.

use store_client::{EmbeddedStore, PostgresStore, StoreError, TurnStore, contract};

/// `DATABASE_URL`, else the local server most machines here have (trust auth on loopback).
fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

#[tokio::test]
async fn embedded_store_passes_the_contract() {
    let dir = std::env::temp_dir().join(unique("store"));
    let store = EmbeddedStore::open(&dir).await.unwrap();
    contract::run_all(&store).await;
    // Reopening finds what was stored (the file is the store).
    drop(store);
    let again = EmbeddedStore::open(&dir).await.unwrap();
    assert_eq!(again.page("keep", None, 10, None).await.unwrap().turns.len(), 1);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn postgres_store_passes_the_contract() {
    let url = database_url();
    let schema = unique("gwtest");
    let _cleanup = DropSchema { url: url.clone(), schema: schema.clone() };
    let store = match PostgresStore::connect_in_schema(&url, Some(&schema)).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot reach PostgreSQL at {url} ({e}). Set DATABASE_URL, or install and start one \
             (Debian/Ubuntu: apt-get install postgresql && pg_ctlcluster 15 main start; .ci/run does this)"
        ),
    };
    contract::run_all(&store).await;
    // Migrations are versioned: connecting again migrates nothing and keeps the data.
    let again = PostgresStore::connect_in_schema(&url, Some(&schema)).await.unwrap();
    assert_eq!(again.page("keep", None, 10, None).await.unwrap().turns.len(), 1);
}

/// Drops the test's schema when the test ends, passed or failed.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Outside the test's runtime, which may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                use sqlx::Executor;
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = pool.execute(sqlx::AssertSqlSafe(sql)).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = PostgresStore::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.is_retryable());
}
