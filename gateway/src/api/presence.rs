//! `GET /v1/users/{user_id}/presence`: the user's own token, or `gateway.admin`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wire::api::PresenceList;

use super::extract::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn get_presence(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    if *p.user_id != *user_id && !p.admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the user or a gateway.admin token may read this presence",
        ));
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
