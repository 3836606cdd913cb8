//! Conversation history from the turn store: pages of finalised turns, a turn's traces, and
//! deleting a conversation. A user reads and deletes only their own; `gateway.admin` any.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store_client::{Cursor, StoreError, TurnRecord};
use wire::api::{ConversationDeleted, HistoryPage, HistoryTurn, TraceItem, TraceList};

use super::extract::PathId;
use crate::audit;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;

/// A page when the client names no `limit`.
const DEFAULT_PAGE: u32 = 20;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "turn store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the turn store cannot be reached now; try again shortly",
                )
            }
            StoreError::Invalid(m) => ApiError::bad_request(m),
            other => {
                tracing::error!(error = %other, "turn store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    "the turn store failed to answer",
                )
            }
        }
    }
}

fn history_turn(t: TurnRecord) -> HistoryTurn {
    HistoryTurn {
        turn_id: t.turn_id,
        conversation_id: t.conversation_id,
        user_id: t.user_id,
        status: t.status,
        text: t.text,
        created_at: ids::rfc3339_ms(t.created_at_ms),
        completed_at: ids::rfc3339_ms(t.completed_at_ms),
        truncated: t.truncated,
        meta: t.meta,
    }
}

/// `limit` (1–`max`, else `default`) and `before` of a paged request (history, the inbox).
pub(super) fn page_query(
    query: Option<&str>,
    default: u32,
    max: u32,
) -> Result<(u32, Option<Cursor>), ApiError> {
    let mut limit = default.min(max);
    let mut before = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "limit" => {
                limit = v.parse().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    ApiError::bad_request(format!("\"limit\" must be a whole number 1-{max}"))
                })?;
            }
            "before" if !v.is_empty() => {
                before = Some(Cursor::decode(&v).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_cursor",
                        "\"before\" is not a cursor this server gave (use a page's \"next\")",
                    )
                })?);
            }
            _ => {}
        }
    }
    Ok((limit, before))
}

/// `GET /v1/conversations/{conversation_id}/turns?limit=N&before=<cursor>`.
pub async fn page(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(conversation_id): PathId,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (limit, before) =
        page_query(query.as_deref(), DEFAULT_PAGE, state.limits.max_history_page)?;
    if p.admin {
        audit::Record::new("history.read", &p, &headers)
            .target(json!({"conversation_id": conversation_id}))
            .emit();
    }
    // A user sees only their own turns: another user's conversation reads as empty.
    let owner = (!p.admin).then_some(&*p.user_id);
    let page = state.store.page(&conversation_id, owner, limit, before.as_ref()).await?;
    let body = HistoryPage {
        turns: page.turns.into_iter().map(history_turn).collect(),
        next: page.next.map(|c| c.encode()),
    };
    Ok(Json(body).into_response())
}

/// `GET /v1/turns/{turn_id}/traces`: the turn's own user, or `gateway.admin`.
pub async fn traces(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(turn_id): PathId,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("turn_not_found", format!("no stored turn {turn_id:?}"));
    let (user, traces) = state.store.traces(&turn_id).await?.ok_or_else(not_found)?;
    if !p.admin && user != *p.user_id {
        return Err(not_found());
    }
    let traces = traces.into_iter().map(|t| TraceItem { kind: t.kind, data: t.data }).collect();
    Ok(Json(TraceList { turn_id: turn_id.clone(), traces }).into_response())
}

/// `DELETE /v1/conversations/{conversation_id}`: the caller's own turns of it (404 when there
/// are none); `gateway.admin`: everyone's, audited.
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    PathId(conversation_id): PathId,
) -> Result<Response, ApiError> {
    let owner = (!p.admin).then_some(&*p.user_id);
    let at = crate::backplane::now_ms();
    let deleted = state.store.delete_conversation(&conversation_id, owner, at).await?;
    if p.admin {
        audit::Record::new("conversation.delete", &p, &headers)
            .target(json!({"conversation_id": conversation_id, "turns_deleted": deleted}))
            .emit();
    } else if deleted == 0 {
        return Err(ApiError::not_found(
            "conversation_not_found",
            format!("no turns of yours in conversation {conversation_id:?}"),
        ));
    }
    Ok(Json(ConversationDeleted { conversation_id, deleted }).into_response())
}
