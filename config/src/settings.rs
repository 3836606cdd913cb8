//! The settings, their defaults and how each is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ConfigErrors};

mod apply;
mod table;

pub use table::{DEFAULT_SKILLS, SETTINGS};

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
    pub redis_append_linger_us: u64,
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
    pub max_header_bytes: u64,
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
            redis_append_linger_us: 0,
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
            max_header_bytes: 32_768,
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
        if self.push_webhook_url.is_some()
            && self.push_webhook_secret.is_none()
            && !refused(errors, &["GATEWAY_PUSH_WEBHOOK_SECRET"])
        {
            errors.push(ConfigError {
                setting: "GATEWAY_PUSH_WEBHOOK_SECRET".into(),
                message:
                    "required with GATEWAY_PUSH_WEBHOOK_URL (the webhook checks the signature)"
                        .into(),
            });
        }
        if self.auth_hs256_secret.is_none()
            && self.auth_public_key_pem.is_none()
            && !refused(errors, &["GATEWAY_AUTH_HS256_SECRET", "GATEWAY_AUTH_PUBLIC_KEY_FILE"])
        {
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

/// Whether one of `settings` was given but refused: it has its message already, so a check
/// that needs it does not add "required".
fn refused(errors: &[ConfigError], settings: &[&str]) -> bool {
    errors.iter().any(|e| settings.contains(&e.setting.as_str()))
}

#[cfg(test)]
mod tests;
