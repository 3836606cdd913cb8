//! The domain contract against a real Redis: two backplanes on one `redis-server` (and on a
//! Redis Cluster) behave as one gateway (the same checks the in-memory backplane passes).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::redis_server::TestRedis;
use gateway::backplane::record::{Append, Event, Outcome};
use gateway::backplane::redis::{RedisLink, RedisSettings};
use gateway::backplane::{Backplane, RedisBackplane};
use gateway::domain::contract::{self, Factory, Fixture, Node};
use gateway::domain::sink::RedisSink;
use gateway::hub::{Hub, Retention};
use gateway::metrics::Metrics;
use store_client::{EmbeddedStore, Persister, RetryPolicy};

struct OnRedis {
    url: String,
}

impl OnRedis {
    async fn node(&self, prefix: &str, keep: usize) -> (Node, Arc<dyn store_client::Outbox>) {
        let hub = Arc::new(Hub::new(
            Retention {
                count: keep,
                age: Duration::from_secs(3600),
                bytes: 0,
                node_bytes: 1 << 30,
            },
            32,
            1024,
            Arc::new(Metrics::new()),
        ));
        let link = RedisLink::connect(&self.url, prefix, hub.clone()).await.expect("connect");
        let outbox = Arc::new(link.outbox());
        let dir = common::temp_dir("gw-redis-contract");
        let store = Arc::new(EmbeddedStore::open(&dir).await.unwrap());
        let persister =
            Arc::new(Persister::new(outbox.clone(), store.clone(), RetryPolicy::default()));
        let settings = RedisSettings {
            keep,
            max_log_bytes: 1 << 20,
            age: Duration::from_secs(3600),
            linger: Duration::ZERO,
        };
        let backplane = Arc::new(RedisBackplane::new(link, hub.clone(), settings));
        let sink = Arc::new(RedisSink { outbox: outbox.clone(), persister });
        let node = Node::new(backplane, hub, sink, store);
        outbox.serve(node.finishers());
        (node, outbox)
    }
}

#[async_trait]
impl Factory for OnRedis {
    async fn make(&self, retention: usize) -> Fixture {
        let prefix = format!("ct{:x}", rand::random::<u32>());
        let (a, outbox) = self.node(&prefix, retention).await;
        let (b, _) = self.node(&prefix, retention).await;
        Fixture { a, b, outbox, guard: None }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_backplanes_pass_the_backplane_contract() {
    let redis = TestRedis::start();
    contract::run_all(&OnRedis { url: redis.url.clone() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backplanes_on_a_redis_cluster_pass_the_backplane_contract() {
    let cluster = common::redis_server::TestCluster::start();
    // Any node is a seed: the gateway finds out it is a cluster.
    contract::run_all(&OnRedis { url: cluster.urls[1].clone() }).await;
}

/// `gateway_redis_append_batches_total` as the node's metrics render it.
fn batches(metrics: &Metrics) -> u64 {
    let text = metrics.render();
    let line = text.lines().find(|l| l.starts_with("gateway_redis_append_batches_total"));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// One backplane on `url` under a fresh prefix (a shared `REDIS_URL` keeps logs an hour), with
/// its metrics.
async fn lone(url: &str, linger: Duration) -> (Arc<RedisBackplane>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let retention =
        Retention { count: 100, age: Duration::from_secs(3600), bytes: 0, node_bytes: 1 << 30 };
    let hub = Arc::new(Hub::new(retention, 32, 1024, metrics.clone()));
    let prefix = format!("lone{:x}", rand::random::<u32>());
    let link = RedisLink::connect(url, &prefix, hub.clone()).await.expect("connect");
    let settings =
        RedisSettings { keep: 100, max_log_bytes: 1 << 20, age: Duration::from_secs(3600), linger };
    (Arc::new(RedisBackplane::new(link, hub, settings)), metrics)
}

fn note(i: usize) -> Event {
    Event { kind: "x", json: format!(r#"{{"type":"x","i":{i}}}"#) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_arriving_faster_than_the_linger_share_one_script_call() {
    let redis = TestRedis::start();
    // Long against the 20 ms between appends, so a slow machine does not split the batch.
    let linger = Duration::from_secs(1);
    let (backplane, metrics) = lone(&redis.url, linger).await;
    // Six appends 20 ms apart: the first leaves alone (nothing came before it), the other
    // five arrive within the linger of each other and wait for one call.
    let mut spawned = Vec::new();
    for i in 0..6 {
        let b = backplane.clone();
        spawned.push(tokio::spawn(
            async move { b.append_if(Append::events("u", vec![note(i)])).await },
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut firsts = Vec::new();
    for s in spawned {
        match s.await.unwrap().expect("appended") {
            Outcome::Appended { first, .. } => firsts.push(first),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(firsts, vec![1, 2, 3, 4, 5, 6], "in the order they were made");
    assert_eq!(batches(&metrics), 2, "one call alone, then one for the five that lingered");
    // After a quiet spell longer than the linger, an append leaves at once.
    tokio::time::sleep(linger + Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    backplane.append_if(Append::events("u", vec![note(6)])).await.expect("appended");
    assert!(started.elapsed() < linger / 2, "a lone append waited {:?}", started.elapsed());
    assert_eq!(batches(&metrics), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_after_redis_forgot_its_scripts_loads_them_again() {
    // A private server: flushing the scripts of a shared one would disturb other tests.
    let redis = TestRedis::private();
    let (backplane, _) = lone(&redis.url, Duration::ZERO).await;
    let first = backplane.append_if(Append::events("u", vec![note(0)])).await.expect("appended");
    assert!(matches!(first, Outcome::Appended { first: 1, .. }), "{first:?}");
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await.unwrap();
    let again = backplane.append_if(Append::events("u", vec![note(1)])).await;
    assert!(matches!(again, Ok(Outcome::Appended { first: 2, .. })), "{again:?}");
}
