//! The producer API: start turns, stream their events (JSON or NDJSON as it arrives), read a
//! turn's state, send notifications.

use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wire::api::{
    CreateNotification, CreateTurn, Disposition, EventItem, NotificationReply, TurnStateSnapshot,
};

use super::extract::{PathId, read_json};
use super::items::parse_item;
use super::ndjson;
use crate::auth::Authenticated;
use crate::auth::Principal;
use crate::domain::{Applied, NewTurn, TurnError};
use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;

pub(super) fn require_publish(p: &Principal) -> Result<(), ApiError> {
    if p.publish { Ok(()) } else { Err(ApiError::insufficient_scope(wire::SCOPE_PUBLISH)) }
}

pub(super) fn check_name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if !wire::api::valid_name(value, max) {
        return Err(ApiError::bad_request(format!(
            "\"{field}\" must be a string of 1-{max} bytes without control characters"
        )));
    }
    Ok(())
}

/// An optional id the producer chooses (`turn_id`, `task_id`): the id rule when present.
pub(super) fn check_id(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    if value.is_some_and(|id| !ids::valid(id)) {
        return Err(ApiError::bad_request(format!(
            "\"{field}\" must be 1-128 characters of [A-Za-z0-9._:-]"
        )));
    }
    Ok(())
}

impl From<TurnError> for ApiError {
    fn from(e: TurnError) -> Self {
        let msg = e.to_string();
        match e {
            TurnError::NotFound(_) => ApiError::not_found("turn_not_found", msg),
            TurnError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "turn_conflict", msg),
            TurnError::Ended { .. } => ApiError::new(StatusCode::CONFLICT, "turn_ended", msg),
            TurnError::Invalid(_) => ApiError::bad_request(msg),
            TurnError::Unavailable(u) => u.into(),
        }
    }
}

/// The preamble of requests that start new work (a turn, a notification, a task): the publish
/// scope, not draining (producers go to another node), and the JSON body.
pub(super) async fn new_work<T: serde::de::DeserializeOwned>(
    state: &AppState,
    p: &Principal,
    body: Body,
) -> Result<T, ApiError> {
    require_publish(p)?;
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    read_json(body, &state.limits).await
}

/// `POST /v1/turns`.
pub async fn create_turn(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CreateTurn = new_work(&state, &p, body).await?;
    check_name("user_id", &req.user_id, 256)?;
    check_name("conversation_id", &req.conversation_id, 256)?;
    check_id("turn_id", req.turn_id.as_deref())?;
    if req.meta.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("\"meta\" must be an object"));
    }
    let new = NewTurn {
        user_id: req.user_id,
        conversation_id: req.conversation_id,
        turn_id: req.turn_id.unwrap_or_else(|| ids::fresh("t")),
        meta: req.meta,
        trace: crate::telemetry::traceparent(&headers),
    };
    let user = new.user_id.clone();
    let (created, fresh) = state.turns.create(new).await?;
    if fresh {
        state.metrics.turns_started.increment(1);
        state.metrics.tenants.of_user(&user).turns.fetch_add(1, Relaxed);
    }
    let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(created)).into_response())
}

/// `GET /v1/turns/{turn_id}`: producer or admin scope, or the turn's own user.
/// With `?snapshot=true` (v1.1) the body also has `text` and `as_of_seq`, as in `turn.snapshot`.
pub async fn get_turn(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(turn_id): PathId,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::from(TurnError::NotFound(turn_id.clone()));
    let snapshot = wants_snapshot(query.as_deref())?;
    let mut t = state.turns.state(&turn_id).await?;
    if !(p.publish || p.admin || *t.user_id == *p.user_id) {
        return Err(not_found());
    }
    if !snapshot {
        return Ok(Json(t).into_response());
    }
    // The snapshot is taken under the turn's lock: its status, index and text agree.
    let s = state.turns.snapshot(&t.user_id, &turn_id).await?;
    (t.status, t.next_index) = (s.status, s.next_index);
    let body = TurnStateSnapshot { state: t, text: s.text, as_of_seq: s.as_of_seq };
    Ok(Json(body).into_response())
}

/// `snapshot=true|false` (also `1|0`), absent: false; anything else is a 400.
fn wants_snapshot(query: Option<&str>) -> Result<bool, ApiError> {
    let value = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "snapshot")
        .map(|(_, v)| v.into_owned());
    match value.as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(_) => Err(ApiError::bad_request("\"snapshot\" must be true or false")),
    }
}

/// `POST /v1/turns/{turn_id}/events`: one JSON item, or NDJSON published as it arrives.
pub async fn turn_events(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(turn_id): PathId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_publish(&p)?;
    let target = TurnTarget { state: &state, turn_id: &turn_id };
    if !ndjson::is_ndjson(&headers) {
        return Ok(Json(ndjson::single(&target, &state.limits, body).await?).into_response());
    }
    // A stream for an unknown or ended turn is refused before its first line arrives.
    let t = state.turns.state(&turn_id).await?;
    if t.status != wire::TurnStatus::Streaming {
        return Err(TurnError::Ended { turn_id, status: t.status }.into());
    }
    Ok(Json(ndjson::stream(&target, &state.limits, body).await?).into_response())
}

/// A turn as the target of a producer's items.
struct TurnTarget<'a> {
    state: &'a AppState,
    turn_id: &'a str,
}

#[async_trait::async_trait]
impl ndjson::Target for TurnTarget<'_> {
    type Item = EventItem;

    fn parse(&self, text: &str) -> Result<EventItem, String> {
        parse_item(text)
    }

    async fn apply(&self, items: Vec<EventItem>) -> (u64, Option<u64>, Option<(ApiError, bool)>) {
        let Applied { accepted, last_seq, refused } =
            self.state.turns.apply(self.turn_id, items).await;
        if accepted > 0
            && let Some(user) = self.state.turns.user_of(self.turn_id)
        {
            self.state.metrics.tenants.of_user(&user).deltas.fetch_add(accepted, Relaxed);
        }
        let refused = refused.map(|e| {
            let invalid = matches!(e, TurnError::Invalid(_));
            (ApiError::from(e), invalid)
        });
        (accepted, last_seq, refused)
    }
}

/// `POST /v1/notifications`.
pub async fn notify(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CreateNotification = new_work(&state, &p, body).await?;
    check_name("user_id", &req.user_id, 256)?;
    check_name("category", &req.category, 128)?;
    if let Some(k) = &req.dedup_key {
        check_name("dedup_key", k, 256)?;
    }
    let (category, priority) = (req.category.clone(), req.priority.unwrap_or_default());
    let user = req.user_id.clone();
    let (reply, fresh) = state.notes.notify(req).await?;
    if fresh {
        state.metrics.notifications.increment(1);
        state.metrics.tenants.of_user(&user).notifications.fetch_add(1, Relaxed);
        state.metrics.category(&category);
        state.metrics.priorities[priority.rank() as usize].increment(1);
        let at = match reply.disposition {
            Disposition::Delivered => 0,
            Disposition::Held => 1,
            Disposition::Digested => 2,
            Disposition::Suppressed => 3,
        };
        state.metrics.dispositions[at].increment(1);
    } else {
        state.metrics.notifications_deduplicated.increment(1);
    }
    Ok((StatusCode::ACCEPTED, Json::<NotificationReply>(reply)).into_response())
}
