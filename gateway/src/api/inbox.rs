//! The inbox over HTTP (PROTOCOL.md v1.1, §Notifications): `GET /v1/users/{id}/notifications`
//! and `POST /v1/users/{id}/notifications/mark`; the user's own token, or `gateway.admin`.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use store_client::InboxStatus;
use wire::api::MarkRequest;

use super::extract::{PathId, own_or_admin, read_json};
use super::history::page_query;
use crate::auth::Authenticated;
use crate::domain::inbox::which;
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

struct Query {
    status: InboxStatus,
    category: Option<String>,
    limit: u32,
    before: Option<(i64, String)>,
}

/// `status` and `category`; `limit` and `before` as every paged route reads them.
fn query(raw: Option<&str>) -> Result<Query, ApiError> {
    let (limit, before) = page_query(raw, DEFAULT_LIMIT, MAX_LIMIT)?;
    let before = before.map(|c| (c.created_at_ms, c.turn_id));
    let mut q = Query { status: InboxStatus::All, category: None, limit, before };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*k {
            "status" => {
                q.status = match &*v {
                    "all" => InboxStatus::All,
                    "unread" => InboxStatus::Unread,
                    "unseen" => InboxStatus::Unseen,
                    "read" => InboxStatus::Read,
                    "archived" => InboxStatus::Archived,
                    _ => {
                        return Err(ApiError::bad_request(
                            "\"status\" must be unread, unseen, read, archived or all",
                        ));
                    }
                }
            }
            "category" if !v.is_empty() => q.category = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(q)
}

pub async fn page(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    own_or_admin(&p, &user_id, &headers, "inbox.read", "read this inbox")?;
    let q = query(raw.as_deref())?;
    let page =
        state.notes.page(&user_id, q.status, q.category.as_deref(), q.limit, q.before).await?;
    Ok(Json(page).into_response())
}

pub async fn mark(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(user_id): PathId,
    body: Body,
) -> Result<Response, ApiError> {
    own_or_admin(&p, &user_id, &headers, "inbox.mark", "mark this inbox")?;
    let req: MarkRequest = read_json(body, &state.limits).await?;
    let ids = which(req.ids, req.all)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m))?;
    let reply = state.notes.mark(&user_id, ids, req.status).await?;
    state.metrics.marks.increment(1);
    Ok(Json(reply).into_response())
}
