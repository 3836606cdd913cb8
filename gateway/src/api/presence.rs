//! `GET /v1/users/{user_id}/presence`: the user's own token, or `gateway.admin`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wire::api::PresenceList;

use super::extract::{PathId, own_or_admin};
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get_presence(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
) -> Result<Response, ApiError> {
    own_or_admin(&p, &user_id, &headers, "presence.read", "read this presence")?;
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
