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
use crate::backplane::{Backplane, MemoryBackplane, RedisBackplane};
use crate::domain::finished::Finishers;
use crate::domain::notifications::NotifyConfig;
use crate::domain::sink::{EmbeddedSink, RedisSink};
use crate::domain::{Notifications, Tasks, TasksConfig, TurnSink, Turns, TurnsConfig};
use crate::hub::{Hub, Retention};
use crate::metrics::Metrics;
use crate::push::{PushConfig, PushSender};
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
    #[error("GATEWAY_DATA_DIR: cannot end the turns a crash left open: {0}")]
    Recover(String),
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

/// Events of each user's log a Redis-mode node keeps at most in its cache: enough for what a
/// lagging endpoint reads back after a burst without a round trip, small enough that caching
/// costs little per event (older events come from Redis).
const NODE_CACHE_EVENTS: usize = 1024;

/// A hub for `cfg`: in embedded mode its rings are the logs (`keep` = the log's retention); in
/// Redis mode they are the node-local cache of the logs of the users with endpoints here.
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
    let metrics = metrics(cfg);
    let hub = hub(cfg, NODE_CACHE_EVENTS.min(cfg.log_retention as usize), &metrics);
    let link =
        RedisLink::connect(url, &cfg.redis_prefix, hub.clone()).await.map_err(SetupError::Redis)?;
    let store = store(cfg).await?;
    let outbox = Arc::new(link.outbox());
    let persister = Arc::new(Persister::new(outbox.clone(), store.clone(), retry_policy(cfg)));
    observe_writes(&persister, &metrics);
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
        linger: Duration::from_micros(cfg.redis_append_linger_us),
    };
    let backplane: Arc<dyn Backplane> = Arc::new(RedisBackplane::new(link, hub.clone(), settings));
    let sink = Arc::new(RedisSink { outbox: outbox.clone(), persister: persister.clone() });
    let push = push(cfg, &store, &metrics);
    let d = domain(cfg, &backplane, sink, &store, presence.clone(), push.clone(), &metrics);
    let (turns, tasks, notes) = (d.turns.clone(), d.tasks.clone(), d.notes.clone());
    outbox.serve(Arc::new(Finishers { turns, tasks, notes }));
    let Domain { turns, notes, tasks } = d;
    Ok(Parts { hub, backplane, turns, notes, tasks, presence, store, persister, metrics, push })
}

/// Embedded mode: one process holds every log, turn and presence entry.
pub async fn embedded(cfg: &Config) -> Result<Parts, SetupError> {
    let metrics = metrics(cfg);
    let hub = hub(cfg, cfg.log_retention as usize, &metrics);
    let store = store(cfg).await?;
    let outbox = Arc::new(EmbeddedOutbox::open(&cfg.data_dir).await.map_err(SetupError::DataDir)?);
    let persister = Arc::new(Persister::new(outbox.clone(), store.clone(), retry_policy(cfg)));
    observe_writes(&persister, &metrics);
    let backplane: Arc<dyn Backplane> = Arc::new(MemoryBackplane::new(hub.clone()));
    let sink = Arc::new(EmbeddedSink {
        outbox,
        persister: persister.clone(),
        turn_retention: Duration::from_millis(cfg.turn_retention_ms),
        direct: cfg.store_url.is_none(),
        queued: Default::default(),
    });
    let presence = Arc::new(MemoryPresence::new(Duration::from_millis(cfg.presence_ttl_ms)));
    let push = push(cfg, &store, &metrics);
    let Domain { turns, notes, tasks } =
        domain(cfg, &backplane, sink, &store, presence.clone(), push.clone(), &metrics);
    turns.recover().await.map_err(SetupError::Recover)?;
    tasks.recover().await.map_err(SetupError::Recover)?;
    Ok(Parts { hub, backplane, turns, notes, tasks, presence, store, persister, metrics, push })
}

/// The registry, with the per-tenant bound from the settings.
fn metrics(cfg: &Config) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new());
    metrics.tenants.set_top(cfg.metrics_top_tenants as usize);
    metrics
}

/// Store write latencies go to `gateway_store_write_seconds`; with traces on, each write is a
/// `store` span.
fn observe_writes(persister: &Persister, metrics: &Arc<Metrics>) {
    let h = metrics.store_write.clone();
    persister.observe_writes(move |d| h.record(d.as_secs_f64()));
    if crate::telemetry::enabled() {
        persister.trace_writes(store_span);
    }
}

/// The span of a store write: a turn's joins the trace its creation carried.
fn store_span(item: &store_client::Final) -> tracing::Span {
    let span = crate::otel_span!("store", key = %item.key(), user_id = %item.user_id());
    if let store_client::Final::Turn(t) = item {
        crate::telemetry::adopt(&span, t.trace.as_deref(), None);
    }
    span
}

/// The domain services of a mode.
struct Domain {
    turns: Arc<Turns>,
    notes: Arc<Notifications>,
    tasks: Arc<Tasks>,
}

/// The domain services over a backplane.
fn domain(
    cfg: &Config,
    backplane: &Arc<dyn Backplane>,
    sink: Arc<dyn TurnSink>,
    store: &Arc<dyn TurnStore>,
    presence: Arc<dyn presence::PresenceRegistry>,
    push: Option<Arc<PushSender>>,
    metrics: &Arc<Metrics>,
) -> Domain {
    let mut turns = Turns::new(
        backplane.clone(),
        sink.clone(),
        TurnsConfig {
            max_text: cfg.store_max_text_bytes as usize,
            turn_idle: Duration::from_millis(cfg.turn_idle_timeout_ms),
            turn_retention: Duration::from_millis(cfg.turn_retention_ms),
        },
    );
    turns.observe_first_delta(metrics.first_delta.clone());
    let notify = NotifyConfig {
        dedup_window: Duration::from_millis(cfg.dedup_window_ms),
        budget: cfg.notify_budget_per_hour as u32,
        budget_window: Duration::from_millis(cfg.notify_budget_window_ms),
    };
    let notes =
        Notifications::new(backplane.clone(), store.clone(), sink.clone(), notify, presence, push);
    let tasks = TasksConfig {
        max_bytes: cfg.task_max_artifact_bytes,
        max_open: cfg.max_open_tasks as usize,
        retention: Duration::from_millis(cfg.turn_retention_ms),
    };
    let tasks = Tasks::new(backplane.clone(), sink, store.clone(), tasks);
    Domain { turns: Arc::new(turns), notes: Arc::new(notes), tasks: Arc::new(tasks) }
}

/// The push sender, when `GATEWAY_PUSH_WEBHOOK_URL` is set.
fn push(
    cfg: &Config,
    store: &Arc<dyn TurnStore>,
    metrics: &Arc<Metrics>,
) -> Option<Arc<PushSender>> {
    let (url, secret) = (cfg.push_webhook_url.clone()?, cfg.push_webhook_secret.clone()?);
    let min_priority =
        serde_json::from_value(serde_json::Value::from(cfg.push_min_priority.as_str()))
            .unwrap_or(wire::Priority::High);
    let push = PushConfig { url, secret, min_priority };
    Some(Arc::new(PushSender::new(store.clone(), push, metrics.clone())))
}
