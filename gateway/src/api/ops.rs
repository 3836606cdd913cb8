//! Health, readiness and metrics: no token needed (bind them privately in production).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store_client::outbox::now_ms;
use tokio::time::timeout;

use crate::error::ApiError;
use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// How long `/readyz` waits for the store to answer a ping.
const STORE_PING: Duration = Duration::from_secs(1);

/// The node can serve: not draining, its backplane (Redis) reachable. The turn store is reported
/// but does not make the node unready: streaming goes on while finished turns wait in the outbox.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "the node is draining")
            .into_response();
    }
    if let Err(e) = state.backplane.ready().await {
        return ApiError::from(e).into_response();
    }
    let reachable = matches!(timeout(STORE_PING, state.store.ping()).await, Ok(Ok(())));
    let outbox = match state.persister.outbox().stats().await {
        Ok(s) => json!({
            "backlog": s.depth,
            "oldest_age_ms": s.oldest_enqueued_ms.map(|t| (now_ms() - t).max(0)),
            "set_aside": s.set_aside,
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    Json(json!({
        "status": "ready",
        "node_id": state.node_id,
        "mode": state.backplane.mode(),
        "store": {
            "reachable": reachable,
            // Writes fail for a passing reason (down, disk full): the backlog waits and grows.
            "writes_failing": state.persister.counters.failing.load(Ordering::Relaxed),
            "outbox": outbox,
        },
    }))
    .into_response()
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.persistence(&state.persister.counters);
    state.metrics.log_bytes.set(state.hub.log_bytes() as f64);
    state.metrics.connections_open.set(state.admission.open() as f64);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
