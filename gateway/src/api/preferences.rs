//! `GET`, `PUT`, `PATCH /v1/users/{user_id}/preferences` (PROTOCOL.md v1.1, §Notifications):
//! the user's own token, or `gateway.admin`. A bad document is a 400 `invalid_preferences`
//! naming the field by path; nothing is stored then.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::extract::{PathId, own_or_admin, read_json};
use crate::auth::{Authenticated, Principal};
use crate::domain::notifications::PrefsError;
use crate::error::ApiError;
use crate::state::AppState;

fn own(
    p: &Principal,
    user_id: &str,
    headers: &HeaderMap,
    action: &'static str,
) -> Result<(), ApiError> {
    own_or_admin(p, user_id, headers, action, "use these preferences")
}

impl From<PrefsError> for ApiError {
    fn from(e: PrefsError) -> Self {
        match e {
            PrefsError::Invalid(e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_preferences", e.to_string())
            }
            PrefsError::Unavailable(u) => u.into(),
        }
    }
}

pub async fn get(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
) -> Result<Response, ApiError> {
    own(&p, &user_id, &headers, "preferences.read")?;
    Ok(Json(state.notes.preferences(&user_id).await?).into_response())
}

pub async fn put(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
    body: Body,
) -> Result<Response, ApiError> {
    own(&p, &user_id, &headers, "preferences.write")?;
    let doc: Value = read_json(body, &state.limits).await?;
    Ok(Json(state.notes.put_preferences(&user_id, &doc).await?).into_response())
}

pub async fn patch(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
    body: Body,
) -> Result<Response, ApiError> {
    own(&p, &user_id, &headers, "preferences.write")?;
    let patch: Value = read_json(body, &state.limits).await?;
    Ok(Json(state.notes.patch_preferences(&user_id, &patch).await?).into_response())
}
