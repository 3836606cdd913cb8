//! One setting's value, checked and parsed into its field: each key's bounds are here.

use std::path::PathBuf;

use super::{Config, KeyAlgorithm, LogFormat, OriginPolicy};
use crate::parse;

impl Config {
    /// Sets `key` from its text; the message names what is wrong with the value.
    pub(super) fn apply(&mut self, key: &str, v: &str) -> Result<(), String> {
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
            "redis_append_linger_us" => self.redis_append_linger_us = parse::int(v, 0, 100_000)?,
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
            "max_header_bytes" => self.max_header_bytes = parse::int(v, 8_192, 1_048_576)?,
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
