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
