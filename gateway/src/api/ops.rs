//! Health, readiness and metrics: no token needed (bind them privately in production).

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// The node can serve: not draining (and, in later modes, its backends reachable).
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_draining() {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the node is draining",
        )
        .into_response();
    }
    Json(json!({"status": "ready", "node_id": state.node_id, "mode": "embedded"})).into_response()
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
