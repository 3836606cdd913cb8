//! The settings, their defaults and how each is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ConfigErrors};
use crate::parse;

/// The Agent Card's skills unless `a2a_skills` says otherwise.
pub const DEFAULT_SKILLS: &str = r#"[{"id":"tasks","name":"Tasks and turns","description":"Get, list, follow and cancel a user's long-running tasks and assistant turns","tags":["tasks","streaming"]}]"#;

/// Every setting: TOML key (the variable is `GATEWAY_` + its upper case), default, meaning.
/// The README's configuration reference is this table.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    ("listen", "127.0.0.1:8080", "address to bind; port 0 picks a free port"),
    ("node_id", "random", "this node's id in presence"),
    (
        "auth_hs256_secret",
        "none",
        "HS256 secret (at least 16 bytes); required unless --dev or a public key is set",
    ),
    ("auth_public_key_file", "none", "PEM public key for RS256 or ES256"),
    (
        "auth_public_key_alg",
        "from the key",
        "RS256 or ES256, when the key file should be pinned to one",
    ),
    ("auth_audience", "not checked", "required `aud`"),
    ("auth_issuer", "not checked", "required `iss`"),
    ("auth_leeway_ms", "5000", "clock skew allowed on exp / nbf"),
    (
        "allowed_origins",
        "none",
        "comma-separated Origins allowed on /v1/ws and /v1/sse (`*` for any); requests without Origin are always allowed; --dev: any",
    ),
    (
        "redis_url",
        "unset: embedded",
        "Redis for presence, log and cross-node fan-out: `redis://host:port` (a single instance, or any node of a cluster) or `redis+cluster://host:port,host:port`",
    ),
    (
        "redis_prefix",
        "gw",
        "prefix of every Redis key and channel (deployments sharing a Redis differ by it)",
    ),
    ("store_url", "unset: embedded", "postgres://… for the turn store"),
    (
        "store_schema",
        "none",
        "PostgreSQL schema of the turn store (created if missing), to share one database",
    ),
    ("data_dir", "./data", "where the embedded store and the embedded outbox live"),
    (
        "store_max_text_bytes",
        "8388608",
        "longest turn text kept and stored; a longer turn is stored cut to it and flagged `truncated`",
    ),
    (
        "store_retention_ms",
        "0",
        "stored turns completed longer ago than this are purged in the background (0: kept)",
    ),
    ("max_history_page", "100", "largest `limit` of a history page"),
    (
        "outbox_retry_base_ms",
        "500",
        "first retry delay of a turn the store did not take; doubles per failure",
    ),
    (
        "outbox_retry_max_ms",
        "60000",
        "longest delay between retries of a turn the store did not take",
    ),
    ("presence_ttl_ms", "30000", "how long a dead node's endpoints stay listed"),
    ("heartbeat_ms", "15000", "WebSocket ping / SSE heartbeat interval"),
    ("log_retention", "10000", "events kept per user log for resume"),
    ("log_retention_ms", "3600000", "how long an event stays in a user log for resume"),
    (
        "log_retention_bytes",
        "16777216",
        "bytes of events kept per user log for resume (the older go first)",
    ),
    (
        "log_memory_bytes",
        "536870912",
        "bytes all user logs of this node may hold together; past it the largest logs are trimmed first",
    ),
    (
        "turn_idle_timeout_ms",
        "600000",
        "a streaming turn with no event for this long is ended `failed` (`error: \"idle_timeout\"`)",
    ),
    (
        "max_connections",
        "from the descriptor limit",
        "open TCP connections this node accepts; past it new ones get 503 (/healthz, /readyz and /metrics still answer)",
    ),
    (
        "max_pending_per_ip",
        "256",
        "connections from one IP address that have not yet presented a valid token; past it 429",
    ),
    (
        "header_read_timeout_ms",
        "10000",
        "a connection must send a whole request head within this long (also one that sends nothing)",
    ),
    (
        "body_idle_timeout_ms",
        "60000",
        "a streamed request body that completes no NDJSON item for this long is answered 408",
    ),
    (
        "client_publish_per_sec",
        "20",
        "client frames that publish (notification.read, cancels) per connection and second, burst twice that; beyond: error `rate_limited`",
    ),
    ("max_frame_bytes", "65536", "largest client frame (close 1009 above it)"),
    (
        "outbound_queue",
        "1024",
        "retired (PROTOCOL.md v1.1): accepted with a warning, does nothing; an endpoint that falls behind reads on from the log",
    ),
    ("max_endpoints_per_user", "32", "endpoints one user may hold (429 above it)"),
    ("max_body_bytes", "1048576", "largest JSON request body (413 above it)"),
    ("max_ndjson_line_bytes", "1048576", "largest NDJSON line of a streamed events body"),
    ("max_ndjson_body_bytes", "67108864", "largest streamed NDJSON body"),
    ("dedup_window_ms", "3600000", "how long a notification dedup_key is remembered"),
    (
        "notify_budget_per_hour",
        "0",
        "live notifications below high per user and window before the rest is digested (0: no budget); a user's budget_per_hour overrides it",
    ),
    ("notify_budget_window_ms", "3600000", "the sliding window the notification budget counts in"),
    (
        "inbox_retention_ms",
        "2592000000",
        "how long a notification stays in the inbox (and its counts)",
    ),
    (
        "push_webhook_url",
        "unset: no push",
        "where delivered notifications of users with no live endpoint (and every critical one) are POSTed, and retracts",
    ),
    (
        "push_webhook_secret",
        "unset",
        "HMAC-SHA256 key of X-Gateway-Signature (at least 16 bytes); required with push_webhook_url",
    ),
    (
        "push_min_priority",
        "high",
        "the lowest priority pushed to an offline user (low, normal, high, critical)",
    ),
    ("turn_retention_ms", "3600000", "how long an ended turn's state (and idempotency) is kept"),
    (
        "task_max_artifact_bytes",
        "4194304",
        "bytes of artifact chunks one task may hold (more: 400 artifact_too_large)",
    ),
    (
        "max_open_tasks",
        "1000",
        "tasks of one user not yet stored (open, or ended and waiting for the store); more: 429",
    ),
    (
        "public_url",
        "unset: from the request's Host",
        "the gateway's public base URL (http or https), for the A2A Agent Card",
    ),
    (
        "a2a_agent_url",
        "unset: SendMessage answers -32004",
        "where A2A SendMessage / SendStreamingMessage are forwarded (POST, 10 s timeout)",
    ),
    ("a2a_name", "Assistant gateway", "the Agent Card's name"),
    (
        "metrics_top_tenants",
        "20",
        "tenants (JWT tid) with a metrics label of their own, by volume; the rest are other",
    ),
    (
        "a2a_description",
        "Follows a user's tasks and assistant turns",
        "the Agent Card's description",
    ),
    (
        "a2a_skills",
        "one skill, tasks",
        "the Agent Card's skills: a JSON array of {id, name, description, tags}",
    ),
    ("drain_timeout_ms", "10000", "how long a drain waits for endpoints to close before exiting"),
    ("reconnect_after_ms", "1000", "after_ms of the reconnect frame, SSE retry: on drain"),
    (
        "write_stall_ms",
        "30000",
        "a connection whose writes stay blocked this long is dropped (a peer that stopped reading)",
    ),
    (
        "ws_read_buffer_bytes",
        "256",
        "per-WebSocket read chunk; client frames are small, and a larger one still fits (the buffer grows)",
    ),
    ("ws_write_buffer_bytes", "8192", "per-WebSocket write batching target"),
    ("log_format", "text", "text or json (structured logs)"),
];

/// Which `Origin`s may open `/v1/ws` and `/v1/sse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Only requests without an `Origin` header (non-browser clients).
    NoneAllowed,
    Any,
    List(Vec<String>),
}

impl OriginPolicy {
    /// Whether a request with this `Origin` header (or none) may connect.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (self, origin) {
            (_, None) | (OriginPolicy::Any, _) => true,
            (OriginPolicy::NoneAllowed, Some(_)) => false,
            (OriginPolicy::List(list), Some(o)) => list.iter().any(|a| a.eq_ignore_ascii_case(o)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// An asymmetric algorithm for `auth_public_key_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rs256,
    Es256,
}

/// The gateway's settings, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub node_id: String,
    pub auth_hs256_secret: Option<String>,
    pub auth_public_key_file: Option<PathBuf>,
    /// The PEM text of `auth_public_key_file`, read at load time so a bad path fails start-up.
    pub auth_public_key_pem: Option<String>,
    pub auth_public_key_alg: Option<KeyAlgorithm>,
    pub auth_audience: Option<String>,
    pub auth_issuer: Option<String>,
    pub auth_leeway_ms: u64,
    pub allowed_origins: OriginPolicy,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub store_url: Option<String>,
    pub store_schema: Option<String>,
    pub data_dir: PathBuf,
    pub store_max_text_bytes: u64,
    pub store_retention_ms: u64,
    pub max_history_page: u64,
    pub outbox_retry_base_ms: u64,
    pub outbox_retry_max_ms: u64,
    pub presence_ttl_ms: u64,
    pub heartbeat_ms: u64,
    pub log_retention: u64,
    pub log_retention_ms: u64,
    pub log_retention_bytes: u64,
    pub log_memory_bytes: u64,
    pub turn_idle_timeout_ms: u64,
    /// 0: from the descriptor limit.
    pub max_connections: u64,
    pub max_pending_per_ip: u64,
    pub header_read_timeout_ms: u64,
    pub body_idle_timeout_ms: u64,
    pub client_publish_per_sec: u64,
    pub max_frame_bytes: u64,
    pub outbound_queue: u64,
    pub max_endpoints_per_user: u64,
    pub max_body_bytes: u64,
    pub max_ndjson_line_bytes: u64,
    pub max_ndjson_body_bytes: u64,
    pub dedup_window_ms: u64,
    pub notify_budget_per_hour: u64,
    pub notify_budget_window_ms: u64,
    pub inbox_retention_ms: u64,
    pub push_webhook_url: Option<String>,
    pub push_webhook_secret: Option<String>,
    /// `low`, `normal`, `high` or `critical`.
    pub push_min_priority: String,
    pub turn_retention_ms: u64,
    pub task_max_artifact_bytes: u64,
    pub max_open_tasks: u64,
    /// No trailing slash.
    pub public_url: Option<String>,
    pub a2a_agent_url: Option<String>,
    pub a2a_name: String,
    pub metrics_top_tenants: u64,
    pub a2a_description: String,
    /// A JSON array of A2A AgentSkill objects.
    pub a2a_skills: String,
    pub drain_timeout_ms: u64,
    pub reconnect_after_ms: u64,
    pub write_stall_ms: u64,
    pub ws_read_buffer_bytes: u64,
    pub ws_write_buffer_bytes: u64,
    pub log_format: LogFormat,
    /// `--dev`: a random secret when none is set, any Origin, sample tokens printed.
    pub dev: bool,
    /// Whether `auth_hs256_secret` was made up by `--dev` (so the tokens printed are the only way in).
    pub dev_secret_generated: bool,
    /// `GATEWAY_*` variables that name no setting: likely typos, logged as warnings.
    pub unknown_variables: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            node_id: random_node_id(),
            auth_hs256_secret: None,
            auth_public_key_file: None,
            auth_public_key_pem: None,
            auth_public_key_alg: None,
            auth_audience: None,
            auth_issuer: None,
            auth_leeway_ms: 5_000,
            allowed_origins: OriginPolicy::NoneAllowed,
            redis_url: None,
            redis_prefix: "gw".into(),
            store_url: None,
            store_schema: None,
            data_dir: PathBuf::from("./data"),
            store_max_text_bytes: 8 << 20,
            store_retention_ms: 0,
            max_history_page: 100,
            outbox_retry_base_ms: 500,
            outbox_retry_max_ms: 60_000,
            presence_ttl_ms: 30_000,
            heartbeat_ms: 15_000,
            log_retention: 10_000,
            log_retention_ms: 3_600_000,
            log_retention_bytes: 16 << 20,
            log_memory_bytes: 512 << 20,
            turn_idle_timeout_ms: 600_000,
            max_connections: 0,
            max_pending_per_ip: 256,
            header_read_timeout_ms: 10_000,
            body_idle_timeout_ms: 60_000,
            client_publish_per_sec: 20,
            max_frame_bytes: 65_536,
            outbound_queue: 1_024,
            max_endpoints_per_user: 32,
            max_body_bytes: 1 << 20,
            max_ndjson_line_bytes: 1 << 20,
            max_ndjson_body_bytes: 64 << 20,
            dedup_window_ms: 3_600_000,
            notify_budget_per_hour: 0,
            notify_budget_window_ms: 3_600_000,
            inbox_retention_ms: 30 * 86_400_000,
            push_webhook_url: None,
            push_webhook_secret: None,
            push_min_priority: "high".into(),
            turn_retention_ms: 3_600_000,
            task_max_artifact_bytes: 4 << 20,
            max_open_tasks: 1_000,
            public_url: None,
            a2a_agent_url: None,
            a2a_name: "Assistant gateway".into(),
            metrics_top_tenants: 20,
            a2a_description: "Follows a user's tasks and assistant turns".into(),
            a2a_skills: DEFAULT_SKILLS.into(),
            drain_timeout_ms: 10_000,
            reconnect_after_ms: 1_000,
            write_stall_ms: 30_000,
            ws_read_buffer_bytes: 256,
            ws_write_buffer_bytes: 8_192,
            log_format: LogFormat::Text,
            dev: false,
            dev_secret_generated: false,
            unknown_variables: Vec::new(),
        }
    }
}

fn random_node_id() -> String {
    format!("n_{:08x}", rand::random::<u32>())
}

fn random_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const ENV_PREFIX: &str = "GATEWAY_";

/// `GATEWAY_*` variables read elsewhere than [`Config`] (so not typos): the log filter.
const OTHER_VARIABLES: &[&str] = &["GATEWAY_LOG"];

impl Config {
    /// Loads settings: defaults, then `file` (TOML, keys as in [`SETTINGS`]), then the
    /// `GATEWAY_*` entries of `env`. Returns every problem found, not just the first.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        dev: bool,
    ) -> Result<Config, ConfigErrors> {
        let mut cfg = Config { dev, ..Config::default() };
        let mut errors = Vec::new();
        // Later sources win, so gather name → (source label, raw value) first.
        let mut raw: HashMap<&'static str, (String, String)> = HashMap::new();

        if let Some(path) = file {
            match read_file(path) {
                Ok(entries) => {
                    for (key, value) in entries {
                        match SETTINGS.iter().find(|(k, _, _)| *k == key) {
                            Some((k, _, _)) => {
                                raw.insert(k, (format!("{} ({key})", path.display()), value));
                            }
                            None => errors.push(ConfigError {
                                setting: format!("{} ({key})", path.display()),
                                message: "no such setting".into(),
                            }),
                        }
                    }
                }
                Err(message) => {
                    errors.push(ConfigError { setting: "--config".into(), message });
                }
            }
        }
        let mut unknown = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
            if OTHER_VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let key = key.to_ascii_lowercase();
            match SETTINGS.iter().find(|(k, _, _)| *k == key) {
                Some((k, _, _)) => {
                    raw.insert(k, (name, value));
                }
                None => unknown.push(name),
            }
        }
        unknown.sort();
        cfg.unknown_variables = unknown;

        // Apply in table order so messages come out in a stable order.
        for (key, _, _) in SETTINGS {
            if let Some((label, value)) = raw.remove(key)
                && let Err(message) = cfg.apply(key, &value)
            {
                errors.push(ConfigError { setting: label, message });
            }
        }
        cfg.finish(&mut errors);
        if errors.is_empty() { Ok(cfg) } else { Err(ConfigErrors(errors)) }
    }

    /// Checks that need several settings together, and fills what `--dev` provides.
    fn finish(&mut self, errors: &mut Vec<ConfigError>) {
        if self.dev {
            if self.auth_hs256_secret.is_none() && self.auth_public_key_pem.is_none() {
                self.auth_hs256_secret = Some(random_secret());
                self.dev_secret_generated = true;
            }
            if self.allowed_origins == OriginPolicy::NoneAllowed {
                self.allowed_origins = OriginPolicy::Any;
            }
        }
        if self.push_webhook_url.is_some() && self.push_webhook_secret.is_none() {
            errors.push(ConfigError {
                setting: "GATEWAY_PUSH_WEBHOOK_SECRET".into(),
                message:
                    "required with GATEWAY_PUSH_WEBHOOK_URL (the webhook checks the signature)"
                        .into(),
            });
        }
        if self.auth_hs256_secret.is_none() && self.auth_public_key_pem.is_none() {
            errors.push(ConfigError {
                setting: "GATEWAY_AUTH_HS256_SECRET".into(),
                message: "required: set it, or GATEWAY_AUTH_PUBLIC_KEY_FILE, or start with --dev"
                    .into(),
            });
        }
        if self.auth_public_key_alg.is_some() && self.auth_public_key_file.is_none() {
            errors.push(ConfigError {
                setting: "GATEWAY_AUTH_PUBLIC_KEY_ALG".into(),
                message: "set without GATEWAY_AUTH_PUBLIC_KEY_FILE".into(),
            });
        }
        if self.store_schema.is_some() && self.store_url.is_none() {
            errors.push(ConfigError {
                setting: "GATEWAY_STORE_SCHEMA".into(),
                message: "set without GATEWAY_STORE_URL (the embedded store has no schemas)".into(),
            });
        }
        if self.outbox_retry_max_ms < self.outbox_retry_base_ms {
            errors.push(ConfigError {
                setting: "GATEWAY_OUTBOX_RETRY_MAX_MS".into(),
                message: format!(
                    "{} is below GATEWAY_OUTBOX_RETRY_BASE_MS ({})",
                    self.outbox_retry_max_ms, self.outbox_retry_base_ms
                ),
            });
        }
        if self.presence_ttl_ms <= self.heartbeat_ms {
            errors.push(ConfigError {
                setting: "GATEWAY_PRESENCE_TTL_MS".into(),
                message: format!(
                    "{} must be larger than GATEWAY_HEARTBEAT_MS ({}), or live endpoints would expire between refreshes",
                    self.presence_ttl_ms, self.heartbeat_ms
                ),
            });
        }
    }

    fn apply(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "listen" => self.listen = parse::socket_addr(v)?,
            "node_id" => self.node_id = parse::node_id(v)?,
            "auth_hs256_secret" => {
                if v.len() < 16 {
                    return Err(format!("must be at least 16 bytes (got {})", v.len()));
                }
                self.auth_hs256_secret = Some(v.to_owned());
            }
            "auth_public_key_file" => {
                let path = PathBuf::from(parse::non_empty(v)?);
                let pem = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if !pem.contains("-----BEGIN") {
                    return Err(format!("{} is not a PEM file", path.display()));
                }
                self.auth_public_key_file = Some(path);
                self.auth_public_key_pem = Some(pem);
            }
            "auth_public_key_alg" => {
                self.auth_public_key_alg = Some(match v.trim().to_ascii_uppercase().as_str() {
                    "RS256" => KeyAlgorithm::Rs256,
                    "ES256" => KeyAlgorithm::Es256,
                    _ => return Err(format!("{v:?} must be RS256 or ES256")),
                })
            }
            "auth_audience" => self.auth_audience = Some(parse::non_empty(v)?),
            "auth_issuer" => self.auth_issuer = Some(parse::non_empty(v)?),
            "auth_leeway_ms" => self.auth_leeway_ms = parse::int(v, 0, 600_000)?,
            "allowed_origins" => {
                let t = v.trim();
                self.allowed_origins = if t.is_empty() {
                    OriginPolicy::NoneAllowed
                } else if t == "*" {
                    OriginPolicy::Any
                } else {
                    OriginPolicy::List(
                        t.split(',').map(parse::origin).collect::<Result<Vec<_>, _>>()?,
                    )
                };
            }
            "redis_url" => self.redis_url = Some(parse::redis_url(v)?),
            "redis_prefix" => {
                let p = parse::non_empty(v)?;
                if !p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
                {
                    return Err(format!("{p:?}: letters, digits, _ - . only"));
                }
                self.redis_prefix = p;
            }
            "store_url" => {
                self.store_url = Some(parse::url_with_schemes(v, &["postgres", "postgresql"])?)
            }
            "store_schema" => {
                let schema = parse::non_empty(v)?;
                if !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("{schema:?}: letters, digits and _ only"));
                }
                self.store_schema = Some(schema);
            }
            "data_dir" => self.data_dir = PathBuf::from(parse::non_empty(v)?),
            "store_max_text_bytes" => {
                self.store_max_text_bytes = parse::int(v, 4 << 20, 1 << 30)?;
            }
            "store_retention_ms" => {
                self.store_retention_ms = parse::int(v, 0, 100 * 365 * 86_400_000)?
            }
            "max_history_page" => self.max_history_page = parse::int(v, 1, 1000)?,
            "outbox_retry_base_ms" => self.outbox_retry_base_ms = parse::int(v, 1, 3_600_000)?,
            "outbox_retry_max_ms" => self.outbox_retry_max_ms = parse::int(v, 1, 86_400_000)?,
            "presence_ttl_ms" => self.presence_ttl_ms = parse::int(v, 1_000, 86_400_000)?,
            "heartbeat_ms" => self.heartbeat_ms = parse::int(v, 10, 3_600_000)?,
            "log_retention" => self.log_retention = parse::int(v, 0, 10_000_000)?,
            "log_retention_ms" => self.log_retention_ms = parse::int(v, 1_000, 30 * 86_400_000)?,
            "log_retention_bytes" => self.log_retention_bytes = parse::int(v, 1_024, 1 << 40)?,
            "log_memory_bytes" => self.log_memory_bytes = parse::int(v, 1 << 20, 1 << 44)?,
            "turn_idle_timeout_ms" => {
                self.turn_idle_timeout_ms = parse::int(v, 1_000, 30 * 86_400_000)?
            }
            "max_connections" => self.max_connections = parse::int(v, 1, 10_000_000)?,
            "max_pending_per_ip" => self.max_pending_per_ip = parse::int(v, 1, 10_000_000)?,
            "header_read_timeout_ms" => self.header_read_timeout_ms = parse::int(v, 100, 600_000)?,
            "body_idle_timeout_ms" => self.body_idle_timeout_ms = parse::int(v, 100, 3_600_000)?,
            "client_publish_per_sec" => self.client_publish_per_sec = parse::int(v, 1, 100_000)?,
            "max_frame_bytes" => self.max_frame_bytes = parse::int(v, 256, 64 << 20)?,
            "outbound_queue" => self.outbound_queue = parse::int(v, 1, 1 << 20)?,
            "max_endpoints_per_user" => self.max_endpoints_per_user = parse::int(v, 1, 1 << 20)?,
            "max_body_bytes" => self.max_body_bytes = parse::int(v, 1_024, 1 << 30)?,
            "max_ndjson_line_bytes" => self.max_ndjson_line_bytes = parse::int(v, 1_024, 1 << 30)?,
            "max_ndjson_body_bytes" => self.max_ndjson_body_bytes = parse::int(v, 1_024, 1 << 40)?,
            "dedup_window_ms" => self.dedup_window_ms = parse::int(v, 1_000, 30 * 86_400_000)?,
            "notify_budget_per_hour" => self.notify_budget_per_hour = parse::int(v, 0, 1_000_000)?,
            "push_webhook_url" => {
                self.push_webhook_url = Some(parse::url_with_schemes(v, &["http", "https"])?)
            }
            "push_webhook_secret" => {
                if v.len() < 16 {
                    return Err(format!("must be at least 16 bytes (got {})", v.len()));
                }
                self.push_webhook_secret = Some(v.to_owned());
            }
            "push_min_priority" => {
                if !["low", "normal", "high", "critical"].contains(&v.trim()) {
                    return Err("must be low, normal, high or critical".into());
                }
                self.push_min_priority = v.trim().to_owned();
            }
            "inbox_retention_ms" => {
                self.inbox_retention_ms = parse::int(v, 1_000, 3_650 * 86_400_000)?
            }
            "notify_budget_window_ms" => {
                self.notify_budget_window_ms = parse::int(v, 1_000, 86_400_000)?
            }
            "turn_retention_ms" => self.turn_retention_ms = parse::int(v, 1_000, 30 * 86_400_000)?,
            "task_max_artifact_bytes" => {
                self.task_max_artifact_bytes = parse::int(v, 1_024, 1 << 30)?
            }
            "max_open_tasks" => self.max_open_tasks = parse::int(v, 1, 1_000_000)?,
            "public_url" => {
                let url = parse::url_with_schemes(v, &["http", "https"])?;
                self.public_url = Some(url.trim_end_matches('/').to_owned());
            }
            "a2a_agent_url" => {
                self.a2a_agent_url = Some(parse::url_with_schemes(v, &["http", "https"])?)
            }
            "a2a_name" => self.a2a_name = parse::text(v, 200)?,
            "metrics_top_tenants" => self.metrics_top_tenants = parse::int(v, 1, 1_000)?,
            "a2a_description" => self.a2a_description = parse::text(v, 2_000)?,
            "a2a_skills" => {
                let skills: serde_json::Value =
                    serde_json::from_str(v).map_err(|e| format!("not JSON ({e})"))?;
                let ok = skills.as_array().is_some_and(|a| {
                    a.iter().all(|s| {
                        s.get("id").is_some_and(|i| i.is_string())
                            && s.get("name").is_some_and(|n| n.is_string())
                    })
                });
                if !ok {
                    return Err(
                        "must be a JSON array of objects with string \"id\" and \"name\"".into()
                    );
                }
                self.a2a_skills = v.to_owned();
            }
            "drain_timeout_ms" => self.drain_timeout_ms = parse::int(v, 0, 600_000)?,
            "reconnect_after_ms" => self.reconnect_after_ms = parse::int(v, 0, 600_000)?,
            "write_stall_ms" => self.write_stall_ms = parse::int(v, 100, 3_600_000)?,
            "ws_read_buffer_bytes" => self.ws_read_buffer_bytes = parse::int(v, 64, 1 << 20)?,
            "ws_write_buffer_bytes" => self.ws_write_buffer_bytes = parse::int(v, 0, 1 << 20)?,
            "log_format" => {
                self.log_format = match v.trim() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(format!("{v:?} must be text or json")),
                }
            }
            _ => return Err("no such setting".into()),
        }
        Ok(())
    }
}

/// Reads a TOML file into (key, value as text) pairs. Arrays (of origins) are joined by commas.
fn read_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table =
        text.parse().map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        out.push((key, text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
