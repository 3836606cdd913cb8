//! The domain contract against a real Redis: two backplanes on one `redis-server` (and on a
//! Redis Cluster) behave as one gateway (the same checks the in-memory backplane passes).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::redis_server::TestRedis;
use gateway::backplane::RedisBackplane;
use gateway::backplane::redis::{RedisLink, RedisSettings};
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
        let settings =
            RedisSettings { keep, max_log_bytes: 1 << 20, age: Duration::from_secs(3600) };
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
