//! Builds the parts of a node from its settings: embedded mode (everything in this process, the
//! outbox in a SQLite file) or Redis mode (logs, turns, presence, fan-out and the outbox shared
//! through Redis); the turn store is the embedded one or PostgreSQL in either mode.

use std::sync::Arc;
use std::time::Duration;

use config::Config;
use presence::{MemoryPresence, RedisPresence};
use store_client::{
    EmbeddedOutbox, EmbeddedStore, Persister, PostgresStore, RetryPolicy, TurnStore,
};

use crate::backplane::redis::{RedisLink, RedisSettings};
use crate::backplane::{MemoryBackplane, MemoryLimits, RedisBackplane};
use crate::hub::{Hub, Retention};
use crate::metrics::Metrics;
use crate::state::Parts;

/// Why a node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("GATEWAY_REDIS_URL: cannot connect to Redis: {0}")]
    Redis(redis::RedisError),
    #[error("GATEWAY_REDIS_URL: presence: {0}")]
    Presence(String),
    #[error("GATEWAY_DATA_DIR: {0}")]
    DataDir(store_client::StoreError),
    #[error("GATEWAY_STORE_URL: {0}")]
    Store(store_client::StoreError),
}

/// The retry policy of the outbox, from the settings.
pub fn retry_policy(cfg: &Config) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(cfg.outbox_retry_base_ms),
        max: Duration::from_millis(cfg.outbox_retry_max_ms),
        ..RetryPolicy::default()
    }
}

/// The turn store the settings name: PostgreSQL (connected and migrated when it first answers,
/// so a node starts during a database outage) or the embedded file.
pub async fn store(cfg: &Config) -> Result<Arc<dyn TurnStore>, SetupError> {
    Ok(match &cfg.store_url {
        Some(url) => {
            let pg =
                PostgresStore::open(url, cfg.store_schema.as_deref()).map_err(SetupError::Store)?;
            if let Err(e) = pg.ping().await {
                tracing::warn!(error = %e, "PostgreSQL is not reachable yet; finished turns wait in the outbox");
            }
            Arc::new(pg)
        }
        None => Arc::new(
            EmbeddedStore::open(&cfg.data_dir.join("store")).await.map_err(SetupError::DataDir)?,
        ),
    })
}

/// The parts of the mode the settings ask for.
pub async fn parts(cfg: &Config) -> Result<Parts, SetupError> {
    match &cfg.redis_url {
        Some(url) => redis(cfg, url).await,
        None => embedded(cfg).await,
    }
}

/// Live events queued per endpoint before it reads on from the log instead (PROTOCOL.md v1.1,
/// §Backpressure): a fast path, not a limit (`GATEWAY_OUTBOUND_QUEUE` is retired).
const LIVE_QUEUE: usize = 256;

/// A hub for `cfg`; `keep`: events each user log keeps in this process (0 in Redis mode,
/// where the logs are in Redis).
fn hub(cfg: &Config, keep: usize, metrics: &Arc<Metrics>) -> Arc<Hub> {
    let retention = Retention {
        count: keep,
        age: Duration::from_millis(cfg.log_retention_ms),
        bytes: cfg.log_retention_bytes as usize,
        node_bytes: cfg.log_memory_bytes as usize,
    };
    Arc::new(Hub::new(retention, cfg.max_endpoints_per_user as usize, LIVE_QUEUE, metrics.clone()))
}

/// Redis mode: logs, turns, dedup keys, presence and the outbox in Redis, shared by every node.
pub async fn redis(cfg: &Config, url: &str) -> Result<Parts, SetupError> {
    let metrics = Arc::new(Metrics::new());
    let hub = hub(cfg, 0, &metrics);
    let link =
        RedisLink::connect(url, &cfg.redis_prefix, hub.clone()).await.map_err(SetupError::Redis)?;
    let store = store(cfg).await?;
    let max_text = cfg.store_max_text_bytes as usize;
    let turn_retention = Duration::from_millis(cfg.turn_retention_ms);
    let outbox = Arc::new(link.outbox(turn_retention, max_text));
    let persister = Arc::new(Persister::new(outbox.clone(), store.clone(), retry_policy(cfg)));
    let presence = RedisPresence::with_connection(
        link.conns.commands.clone(),
        &cfg.redis_prefix,
        Duration::from_millis(cfg.presence_ttl_ms),
    );
    presence.load_scripts().await.map_err(|e| SetupError::Presence(e.to_string()))?;
    let presence = Arc::new(presence);
    let settings = RedisSettings {
        keep: cfg.log_retention as usize,
        max_log_bytes: cfg.log_retention_bytes as usize,
        age: Duration::from_millis(cfg.log_retention_ms),
        dedup_window: Duration::from_millis(cfg.dedup_window_ms),
        max_text,
        turn_idle: Duration::from_millis(cfg.turn_idle_timeout_ms),
    };
    let backplane =
        Arc::new(RedisBackplane::new(link, hub.clone(), outbox, persister.clone(), settings));
    Ok(Parts { hub, backplane, presence, store, persister, metrics })
}

/// Embedded mode: one process holds every log, turn and presence entry.
pub async fn embedded(cfg: &Config) -> Result<Parts, SetupError> {
    let metrics = Arc::new(Metrics::new());
    let hub = hub(cfg, cfg.log_retention as usize, &metrics);
    let store = store(cfg).await?;
    let outbox = Arc::new(EmbeddedOutbox::open(&cfg.data_dir).await.map_err(SetupError::DataDir)?);
    let persister = Arc::new(Persister::new(outbox.clone(), store.clone(), retry_policy(cfg)));
    let backplane = Arc::new(MemoryBackplane::new(
        hub.clone(),
        outbox,
        persister.clone(),
        MemoryLimits {
            turn_retention: Duration::from_millis(cfg.turn_retention_ms),
            turn_idle: Duration::from_millis(cfg.turn_idle_timeout_ms),
            dedup_window: Duration::from_millis(cfg.dedup_window_ms),
            max_text: cfg.store_max_text_bytes as usize,
        },
    ));
    backplane.recover().await.map_err(SetupError::DataDir)?;
    let presence = Arc::new(MemoryPresence::new(Duration::from_millis(cfg.presence_ttl_ms)));
    Ok(Parts { hub, backplane, presence, store, persister, metrics })
}
