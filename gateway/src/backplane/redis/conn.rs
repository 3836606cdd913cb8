//! Connections to Redis: a multiplexed, reconnecting connection for commands (shared by every
//! task), and a dedicated one for subscriptions whose messages go straight to a push handler.
//! Both have timeouts on connecting and on every reply.
//!
//! `GATEWAY_REDIS_URL` names a single instance or any node of a cluster: the gateway asks
//! (`INFO cluster`) and uses a cluster client (following MOVED/ASK, sharded pub/sub) when it is
//! one. Several seeds of a cluster: `redis+cluster://host:port,host:port`, or a comma-separated
//! list of `redis://` URLs.

use std::time::Duration;

use redis::aio::{AsyncPushSender, ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, RedisFuture, RedisResult, Value};

/// How long connecting, and each reply, may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection for commands or subscriptions, to a single instance or a cluster.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// Subscribes to a user's channel (sharded on a cluster); resolves once Redis confirmed.
    pub async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            RedisConn::Single(c) => c.subscribe(channel).await,
            RedisConn::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            RedisConn::Single(c) => c.unsubscribe(channel).await,
            RedisConn::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }

    /// The publish command scripts use: sharded on a cluster.
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() { "SPUBLISH" } else { "PUBLISH" }
    }
}

/// The command connection and the subscription connection of one node.
pub struct Connections {
    pub commands: RedisConn,
    pub subscriptions: RedisConn,
}

/// Connects to `url`, a single instance or a cluster; `push` receives every message of the
/// subscription connection (and its disconnections).
pub async fn connect<P: AsyncPushSender>(url: &str, push: P) -> RedisResult<Connections> {
    let seeds: Vec<String> = match url.strip_prefix("redis+cluster://") {
        Some(rest) => rest
            .split(',')
            .map(|hp| format!("redis://{}", hp.trim().trim_end_matches('/')))
            .collect(),
        None if url.contains(',') => url.split(',').map(|u| u.trim().to_owned()).collect(),
        None if is_cluster(url).await? => vec![url.to_owned()],
        None => {
            let commands = single::<P>(url, None).await?;
            let subscriptions = single(url, Some(push)).await?;
            return Ok(Connections { commands, subscriptions });
        }
    };
    let commands = cluster::<P>(&seeds, None).await?;
    let subscriptions = cluster(&seeds, Some(push)).await?;
    Ok(Connections { commands, subscriptions })
}

/// Whether the server at `url` is a cluster node.
async fn is_cluster(url: &str) -> RedisResult<bool> {
    let client = redis::Client::open(url)?;
    let mut conn = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| timed_out("connecting"))??;
    let info: String =
        tokio::time::timeout(TIMEOUT, redis::cmd("INFO").arg("cluster").query_async(&mut conn))
            .await
            .map_err(|_| timed_out("INFO cluster"))??;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("Redis did not answer {what} within {TIMEOUT:?}"),
    ))
}

/// A reconnecting connection to a single instance; with `push`, a RESP3 one whose pushes
/// (messages, disconnections) go there and whose subscriptions are restored on reconnect.
async fn single<P: AsyncPushSender>(url: &str, push: Option<P>) -> RedisResult<RedisConn> {
    let mut info = url.into_connection_info()?;
    let mut config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    if let Some(push) = push {
        let redis = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        info = info.set_redis_settings(redis);
        config = config.set_push_sender(push).set_automatic_resubscription();
    }
    let client = redis::Client::open(info)?;
    Ok(RedisConn::Single(ConnectionManager::new_with_config(client, config).await?))
}

async fn cluster<P: AsyncPushSender>(seeds: &[String], push: Option<P>) -> RedisResult<RedisConn> {
    let mut builder = ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .retries(2);
    if let Some(push) = push {
        builder = builder.use_protocol(ProtocolVersion::RESP3).push_sender(push);
    }
    let client = builder.build()?;
    let conn = tokio::time::timeout(TIMEOUT * 2, client.get_async_connection())
        .await
        .map_err(|_| timed_out("connecting to the cluster"))??;
    Ok(RedisConn::Cluster(conn))
}
