//! What the store tests share: a real PostgreSQL (`DATABASE_URL`, else the local server on
//! 127.0.0.1:5432) in a schema of the test's own, dropped when the test ends.
#![allow(dead_code)]

pub mod proxy;

use store_client::PostgresStore;

/// `DATABASE_URL`, else the local server most machines here have (trust auth on loopback).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn unique(prefix: &str) -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// Connects to `url` in `schema`, or explains how to get a PostgreSQL.
pub async fn postgres(url: &str, schema: &str) -> PostgresStore {
    match PostgresStore::connect_in_schema(url, Some(schema)).await {
        Ok(s) => s,
        Err(e) => panic!(
            "cannot reach PostgreSQL at {url} ({e}). Set DATABASE_URL, or install and start one \
             (Debian/Ubuntu: apt-get install postgresql && pg_ctlcluster 15 main start; .ci/run does this)"
        ),
    }
}

/// A proxy in front of the PostgreSQL at `url`, and the same URL through it.
pub async fn proxied(url: &str) -> (proxy::Proxy, String) {
    let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("a postgres:// URL");
    // A socket directory (the server's default host) is reached on loopback instead.
    let host = if opts.get_host().starts_with('/') { "127.0.0.1" } else { opts.get_host() };
    let upstream =
        tokio::net::lookup_host((host, opts.get_port())).await.unwrap().next().expect("address");
    let proxy = proxy::Proxy::start(upstream).await;
    let mut u = url::Url::parse(url).expect("URL");
    u.set_host(Some("127.0.0.1")).unwrap();
    u.set_port(Some(proxy.addr.port())).unwrap();
    (proxy, u.to_string())
}

/// Drops the test's schema when the test ends, passed or failed.
pub struct DropSchema {
    pub url: String,
    pub schema: String,
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
