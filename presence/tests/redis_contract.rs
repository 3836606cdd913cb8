//! The presence contract against a real Redis.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use presence::{PresenceRegistry, RedisPresence, contract};

static NAMESPACE: AtomicU64 = AtomicU64::new(0);

#[tokio::test]
async fn redis_presence_passes_the_contract() {
    let redis = support::TestRedis::start();
    let ttl = Duration::from_millis(300);
    let first = RedisPresence::connect(&redis.url, "warmup", ttl).await.expect("connect");
    let run = std::process::id();
    contract::run_all(&|| {
        // A namespace per registry: checks cannot see each other's keys.
        let ns = format!("test{run}-{}", NAMESPACE.fetch_add(1, Ordering::Relaxed));
        Box::new(first.clone().renamed(&ns)) as Box<dyn PresenceRegistry>
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_retryable_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err =
        RedisPresence::connect(&format!("redis://127.0.0.1:{port}/"), "x", Duration::from_secs(1))
            .await
            .err()
            .expect("nothing listens there");
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn redis_presence_passes_the_contract_on_a_cluster() {
    let cluster = support::TestCluster::start();
    let client = redis::cluster::ClusterClientBuilder::new(cluster.urls.clone())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .expect("cluster client");
    let conn = client.get_async_connection().await.expect("connect to the cluster");
    let ttl = Duration::from_millis(300);
    let run = std::process::id();
    contract::run_all(&|| {
        let ns = format!("ctest{run}-{}", NAMESPACE.fetch_add(1, Ordering::Relaxed));
        Box::new(RedisPresence::with_connection(conn.clone(), &ns, ttl))
            as Box<dyn PresenceRegistry>
    })
    .await;
}
