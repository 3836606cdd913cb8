//! HTTP routes: client endpoints (`/v1/ws`, `/v1/sse`), the producer API, history, presence,
//! operations.

mod extract;
mod history;
mod items;
mod ops;
mod presence;
mod producer;

pub use extract::{Authenticated, read_json};
pub use items::parse_item;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;
use crate::transport;

/// The gateway's router; `main` and tests serve it on any listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/ws", get(transport::ws::handler))
        .route("/v1/sse", get(transport::sse::handler))
        .route("/v1/turns", post(producer::create_turn))
        .route("/v1/turns/{turn_id}", get(producer::get_turn))
        .route("/v1/turns/{turn_id}/events", post(producer::turn_events))
        .route("/v1/notifications", post(producer::notify))
        .route("/v1/users/{user_id}/presence", get(presence::get_presence))
        .route("/v1/conversations/{conversation_id}/turns", get(history::page))
        .route("/v1/conversations/{conversation_id}", axum::routing::delete(history::delete))
        .route("/v1/turns/{turn_id}/traces", get(history::traces))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("not_found", format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
