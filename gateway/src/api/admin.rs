//! Operator routes (`gateway.admin`): the outbox entries the store refused, and putting them
//! back in line once the cause is mended. Every call is audited.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store_client::AsideFilter;

use super::extract::read_json;
use crate::audit;
use crate::auth::Authenticated;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The most entries one listing returns.
const MAX_LISTED: usize = 1000;

fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.admin { Ok(()) } else { Err(ApiError::insufficient_scope(wire::SCOPE_ADMIN)) }
}

/// `GET /v1/admin/outbox/set-aside` → `{"entries":[{"turn_id","user_id","error"}],"total"}`.
pub async fn set_aside(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&p)?;
    let outbox = state.persister.outbox();
    let entries = outbox.set_aside_entries(MAX_LISTED).await?;
    let total = outbox.stats().await?.set_aside;
    audit::Record::new("outbox.set_aside.list", &p, &headers)
        .target(json!({"listed": entries.len()}))
        .emit();
    Ok(Json(json!({"entries": entries, "total": total})).into_response())
}

/// The body of a retry: `{"turn_ids":[…]}` or `{"all":true}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    #[serde(default)]
    turn_ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// `POST /v1/admin/outbox/set-aside/retry` → `{"retried": n}`: the entries go back in line,
/// due now, and the persister is woken.
pub async fn retry_set_aside(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&p)?;
    let req: Retry = read_json(body, &state.limits).await?;
    let filter = match (req.turn_ids, req.all) {
        (Some(ids), false) => AsideFilter::Ids(ids),
        (None, true) => AsideFilter::All,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give either \"turn_ids\" (an array) or \"all\": true",
            ));
        }
    };
    let retried = state.persister.outbox().retry_set_aside(&filter).await?;
    state.persister.wake();
    audit::Record::new("outbox.set_aside.retry", &p, &headers)
        .target(json!({"filter": format!("{filter:?}"), "retried": retried}))
        .emit();
    Ok(Json(json!({"retried": retried})).into_response())
}
