//! Both backends pass the same contract: the embedded store in a fresh directory, PostgreSQL
//! in a fresh schema of a real server.

mod support;

use store_client::{EmbeddedStore, PostgresStore, StoreError, TurnStore, contract};
use support::{DropSchema, database_url, postgres, unique};

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
    let store = postgres(&url, &schema).await;
    contract::run_all(&store).await;
    // Migrations are versioned: connecting again migrates nothing and keeps the data.
    let again = PostgresStore::connect_in_schema(&url, Some(&schema)).await.unwrap();
    assert_eq!(again.page("keep", None, 10, None).await.unwrap().turns.len(), 1);
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
