//! The state every handler and connection shares.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use config::{Config, OriginPolicy};
use dashmap::DashMap;
use presence::PresenceRegistry;
use store_client::{Persister, TurnStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::backplane::Backplane;
use crate::domain::{Notifications, Tasks, Turns};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Cheap to clone: one `Arc` to [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Limits and timings the handlers read, taken from [`Config`] once.
#[derive(Debug, Clone)]
pub struct Limits {
    pub heartbeat: Duration,
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub max_ndjson_line_bytes: usize,
    pub max_ndjson_body_bytes: u64,
    pub reconnect_after_ms: u64,
    pub ws_read_buffer_bytes: usize,
    pub ws_write_buffer_bytes: usize,
    pub drain_timeout: Duration,
    /// A write pending this long drops the connection (a peer that stopped reading).
    pub write_stall: Duration,
    /// Largest `limit` of a history page.
    pub max_history_page: u32,
    /// Stored turns completed longer ago than this are purged (`None`: kept).
    pub store_retention: Option<Duration>,
    /// A streamed request body that completes no item for this long is answered 408.
    pub body_idle_timeout: Duration,
    /// Publishing client frames per connection and second (burst: twice that).
    pub client_publish_per_sec: u32,
    /// Notifications created longer ago than this leave the inbox.
    pub inbox_retention: Duration,
}

/// The parts a mode (embedded or Redis) is made of; see [`crate::setup`].
pub struct Parts {
    pub hub: Arc<Hub>,
    pub backplane: Arc<dyn Backplane>,
    pub turns: Arc<Turns>,
    pub notes: Arc<Notifications>,
    pub tasks: Arc<Tasks>,
    pub presence: Arc<dyn PresenceRegistry>,
    pub store: Arc<dyn TurnStore>,
    pub persister: Arc<Persister>,
    pub metrics: Arc<Metrics>,
    /// Calls to the push webhook (`None`: push is off).
    pub push: Option<Arc<crate::push::PushSender>>,
}

pub struct Shared {
    pub node_id: String,
    pub verifier: Verifier,
    pub origins: OriginPolicy,
    pub limits: Limits,
    /// Open connections, and those not yet authenticated per IP, against their caps.
    pub admission: Arc<crate::accept::Admission>,
    /// This node's live endpoints, by user (and in embedded mode the logs themselves).
    pub hub: Arc<Hub>,
    /// User logs, turn state and dedup keys: in process, or shared through Redis.
    pub backplane: Arc<dyn Backplane>,
    /// The rules of turns and notifications, over the backplane.
    pub turns: Arc<Turns>,
    pub notes: Arc<Notifications>,
    pub tasks: Arc<Tasks>,
    pub presence: Arc<dyn PresenceRegistry>,
    /// Where finalised turns are kept, and history is read from.
    pub store: Arc<dyn TurnStore>,
    /// Drains the outbox into the store.
    pub persister: Arc<Persister>,
    pub metrics: Arc<Metrics>,
    /// Calls to the push webhook (`None`: push is off).
    pub push: Option<Arc<crate::push::PushSender>>,
    /// This node's endpoints (conn_id → user), for the batched presence refresh.
    pub local_endpoints: DashMap<String, (Arc<str>, Arc<wire::EndpointInfo>)>,
    /// Cancelled when the node starts draining: every connection says goodbye.
    pub shutdown: CancellationToken,
    /// Under `--dev` only: the HS256 secret the demo page's tokens are signed with (and the
    /// `/demo` routes exist).
    pub dev_secret: Option<String>,
    /// The A2A binding's settings and its client for the agent.
    pub a2a: crate::a2a::A2a,
    /// WebSocket connection tasks, which hyper does not track once upgraded.
    pub connections: TaskTracker,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(cfg: &Config, verifier: Verifier, parts: Parts) -> Self {
        AppState(Arc::new(Shared {
            node_id: cfg.node_id.clone(),
            verifier,
            origins: cfg.allowed_origins.clone(),
            limits: Limits {
                heartbeat: Duration::from_millis(cfg.heartbeat_ms),
                max_frame_bytes: cfg.max_frame_bytes as usize,
                max_body_bytes: cfg.max_body_bytes as usize,
                max_ndjson_line_bytes: cfg.max_ndjson_line_bytes as usize,
                max_ndjson_body_bytes: cfg.max_ndjson_body_bytes,
                reconnect_after_ms: cfg.reconnect_after_ms,
                ws_read_buffer_bytes: cfg.ws_read_buffer_bytes as usize,
                ws_write_buffer_bytes: cfg.ws_write_buffer_bytes as usize,
                drain_timeout: Duration::from_millis(cfg.drain_timeout_ms),
                write_stall: Duration::from_millis(cfg.write_stall_ms),
                max_history_page: cfg.max_history_page as u32,
                store_retention: (cfg.store_retention_ms > 0)
                    .then(|| Duration::from_millis(cfg.store_retention_ms)),
                body_idle_timeout: Duration::from_millis(cfg.body_idle_timeout_ms),
                client_publish_per_sec: cfg.client_publish_per_sec as u32,
                inbox_retention: Duration::from_millis(cfg.inbox_retention_ms),
            },
            admission: crate::accept::Admission::new(crate::accept::AcceptLimits {
                max_connections: match cfg.max_connections {
                    0 => crate::accept::default_max_connections(),
                    n => n as usize,
                },
                max_pending_per_ip: cfg.max_pending_per_ip as usize,
                header_read_timeout: Duration::from_millis(cfg.header_read_timeout_ms),
                max_header_bytes: cfg.max_header_bytes as usize,
                write_stall: Duration::from_millis(cfg.write_stall_ms),
            }),
            hub: parts.hub,
            backplane: parts.backplane,
            turns: parts.turns,
            notes: parts.notes,
            tasks: parts.tasks,
            presence: parts.presence,
            store: parts.store,
            persister: parts.persister,
            metrics: parts.metrics,
            push: parts.push,
            a2a: crate::a2a::A2a::from_config(cfg),
            dev_secret: if cfg.dev { cfg.auth_hs256_secret.clone() } else { None },
            local_endpoints: DashMap::new(),
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            draining: AtomicBool::new(false),
        }))
    }
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Refuses new work and tells every connection to leave: attached endpoints through their
    /// outbox (no per-event cost in their loops), those still connecting through `shutdown`.
    /// An endpoint attaching meanwhile either is reached by `close_all` or sees the flag, which
    /// is set first (`attach` and `close_all` take the same per-user lock).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
        self.hub.close_all(wire::close::DRAINING);
    }
}
