//! `GET /v1/users/{user_id}/presence`: the user's own token, or `gateway.admin`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wire::api::PresenceList;

use super::extract::PathId;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get_presence(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
) -> Result<Response, ApiError> {
    if *p.user_id != *user_id && !p.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the user or a gateway.admin token may read this presence",
        ));
    }
    if *p.user_id != *user_id {
        crate::audit::Record::new("presence.read", &p, &headers)
            .target(serde_json::json!({"user_id": user_id}))
            .emit();
    }
    let endpoints = state.presence.list(&user_id).await.map_err(|e| {
        tracing::warn!(error = %e, "presence read failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "presence_unavailable",
            "presence cannot be read now",
        )
    })?;
    Ok(Json(PresenceList { user_id, endpoints }).into_response())
}
