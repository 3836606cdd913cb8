//! The caller's token as an axum extractor: `Authorization: Bearer`, else `access_token` in
//! the query (browsers cannot set headers on WebSocket or EventSource). Rejection: 401 with
//! the reason. It lives with the verifier so that every transport and route takes it from here.

use std::borrow::Cow;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{AuthError, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// A request whose token verified. Rejection: 401 with the reason.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match token(parts).and_then(|t| state.verifier.verify(&t)) {
            Ok(p) => {
                // Its connection no longer counts against its address's unauthenticated cap.
                if let Some(conn) = parts.extensions.get::<crate::accept::ConnHandle>() {
                    conn.authenticated();
                }
                Ok(Authenticated(p))
            }
            Err(e) => {
                state.metrics.auth_failures.increment(1);
                Err(e.into())
            }
        }
    }
}

/// The token from `Authorization: Bearer …`, else the `access_token` query parameter.
fn token(parts: &Parts) -> Result<Cow<'_, str>, AuthError> {
    if let Some(h) = parts.headers.get(AUTHORIZATION) {
        let value = h.to_str().unwrap_or("");
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || rest.is_empty() || rest.contains(' ') {
            return Err(AuthError {
                code: "invalid_token",
                message: "the Authorization header is not \"Bearer <jwt>\"".into(),
            });
        }
        return Ok(Cow::Borrowed(rest));
    }
    parts
        .uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "access_token"))
        .map(|(_, v)| v)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AuthError {
            code: "missing_token",
            message: "a token is required: Authorization: Bearer <jwt>, or ?access_token=<jwt>"
                .into(),
        })
}
