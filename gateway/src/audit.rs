//! The audit trail: one JSON line per operator read, delete or settings change, on the tracing
//! target `audit` (route it apart with `GATEWAY_LOG=audit=info,…` or a JSON log pipeline), so an
//! operator can answer "who deleted this, for which tenant, in which request".

use axum::http::HeaderMap;
use serde::Serialize;

use crate::auth::Principal;

/// One audited action.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// What was done: `conversation.delete`, `outbox.set_aside.retry`, …
    pub action: &'a str,
    /// Who did it (the token's `sub`), and as whom (`admin` or `user`).
    pub actor: &'a str,
    pub role: &'static str,
    /// The actor's tenant (`tid`), when the token has one.
    pub tenant: Option<&'a str>,
    /// The request's `X-Request-Id`, or one made up here.
    pub request_id: String,
    /// What it was done to, and what came of it.
    pub target: serde_json::Value,
}

impl<'a> Record<'a> {
    pub fn new(action: &'a str, p: &'a Principal, headers: &HeaderMap) -> Self {
        Record {
            action,
            actor: &p.user_id,
            role: if p.admin { "admin" } else { "user" },
            tenant: p.tenant.as_deref(),
            request_id: request_id(headers),
            target: serde_json::Value::Null,
        }
    }

    pub fn target(mut self, target: serde_json::Value) -> Self {
        self.target = target;
        self
    }

    /// Writes the record as one JSON line.
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(line) => tracing::info!(target: "audit", "{line}"),
            Err(e) => {
                tracing::error!(target: "audit", error = %e, action = self.action, "unwritable audit record")
            }
        }
    }
}

/// The caller's request id when it is a sane one (1-128 printable ASCII), else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::ids::fresh("r"))
}
