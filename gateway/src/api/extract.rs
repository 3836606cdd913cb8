//! Request extraction: ids in the path, and bodies with a size and a time limit, with errors in
//! the protocol's shape (the caller's token is `auth::Authenticated`).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::Limits;

/// One id from the path (`/v1/turns/{turn_id}`, …), decoded. Rejection: 400 in the protocol's
/// JSON shape when it is not UTF-8 (axum's own rejection is plain text) or holds a control
/// character (no id of ours does, and PostgreSQL cannot even compare one with NUL).
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state).await.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", format!("bad path: {e}"))
        })?;
        check_id("the id in the path", &id)?;
        Ok(PathId(id))
    }
}

/// A caller-given id or name: 1-256 bytes without control characters, else 400 naming `what`.
pub fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if !wire::api::valid_name(id, 256) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("{what} must be 1-256 bytes without control characters"),
        ));
    }
    Ok(())
}

/// Reads a whole body of at most `limits.max_body_bytes` (413 `body_too_large` past it) within
/// `limits.body_idle_timeout` (408 `body_timeout`: a trickled body does not hold a connection).
pub async fn read_body(body: Body, limits: &Limits) -> Result<axum::body::Bytes, ApiError> {
    let limit = limits.max_body_bytes;
    let read = axum::body::to_bytes(body, limit);
    match tokio::time::timeout(limits.body_idle_timeout, read).await {
        Err(_) => Err(body_timeout(limits)),
        Ok(Err(_)) => Err(ApiError::too_large(
            "body_too_large",
            format!("the body is larger than {limit} bytes (GATEWAY_MAX_BODY_BYTES)"),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// 408: the body did not arrive (or completed no item) within the idle timeout.
pub fn body_timeout(limits: &Limits) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body stalled for {} ms (GATEWAY_BODY_IDLE_TIMEOUT_MS)",
            limits.body_idle_timeout.as_millis()
        ),
    )
}

/// Reads a whole JSON body (as [`read_body`]) into `T`.
pub async fn read_json<T: DeserializeOwned>(body: Body, limits: &Limits) -> Result<T, ApiError> {
    let bytes = read_body(body, limits).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not the JSON expected: {e}"),
        )
    })
}

/// The user's own token, or `gateway.admin` (audited as `action` when it is not the user's):
/// who may use a user's presence, preferences or inbox. 403 names `what` otherwise.
pub fn own_or_admin(
    p: &crate::auth::Principal,
    user_id: &str,
    headers: &axum::http::HeaderMap,
    action: &'static str,
    what: &str,
) -> Result<(), ApiError> {
    if *p.user_id != *user_id && !p.admin {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!("only the user or a gateway.admin token may {what}"),
        ));
    }
    if *p.user_id != *user_id {
        crate::audit::Record::new(action, p, headers)
            .target(serde_json::json!({"user_id": user_id}))
            .emit();
    }
    Ok(())
}
