//! The producer API: start turns, stream their events (JSON or NDJSON as it arrives), read a
//! turn's state, send notifications.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use wire::api::{CreateNotification, CreateTurn, EventsAccepted};

use super::extract::{Authenticated, read_body, read_json};
use super::items::parse_item;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;
use crate::turns::{self, NewTurn, TurnError};

fn require_publish(p: &Principal) -> Result<(), ApiError> {
    if p.publish { Ok(()) } else { Err(ApiError::insufficient_scope(wire::SCOPE_PUBLISH)) }
}

fn check_name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max {
        return Err(ApiError::bad_request(format!(
            "\"{field}\" must be a string of 1-{max} bytes"
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
        }
    }
}

/// The preamble of requests that start new work (a turn, a notification): the publish scope,
/// not draining (producers go to another node), and the JSON body.
async fn new_work<T: serde::de::DeserializeOwned>(
    state: &AppState,
    p: &Principal,
    body: Body,
) -> Result<T, ApiError> {
    require_publish(p)?;
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    read_json(body, state.limits.max_body_bytes).await
}

/// `POST /v1/turns`.
pub async fn create_turn(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CreateTurn = new_work(&state, &p, body).await?;
    check_name("user_id", &req.user_id, 256)?;
    check_name("conversation_id", &req.conversation_id, 256)?;
    if req.turn_id.as_deref().is_some_and(|id| !ids::valid(id)) {
        return Err(ApiError::bad_request(
            "\"turn_id\" must be 1-128 characters of [A-Za-z0-9._:-]",
        ));
    }
    if req.meta.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("\"meta\" must be an object"));
    }
    let new = NewTurn {
        user_id: req.user_id,
        conversation_id: req.conversation_id,
        turn_id: req.turn_id,
        meta: req.meta,
    };
    let (created, fresh) = state.turns.create(&state.hub, new)?;
    if fresh {
        state.metrics.turns_started.increment(1);
    }
    let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(created)).into_response())
}

/// `GET /v1/turns/{turn_id}`: producer or admin scope, or the turn's own user.
pub async fn get_turn(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(turn_id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::from(TurnError::NotFound(turn_id.clone()));
    let turn = state.turns.get(&turn_id).ok_or_else(not_found)?;
    let t = turn.lock();
    if !(p.publish || p.admin || t.user_id == p.user_id) {
        return Err(not_found());
    }
    Ok(Json(t.state()).into_response())
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
    )
}

/// `POST /v1/turns/{turn_id}/events`: one JSON item, or NDJSON published line by line as the
/// body arrives. A bad line or an ended turn is answered at once; earlier lines stay published.
pub async fn turn_events(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    Path(turn_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_publish(&p)?;
    let turn = state.turns.get(&turn_id).ok_or(TurnError::NotFound(turn_id.clone()))?;
    {
        let t = turn.lock();
        if t.status != wire::TurnStatus::Streaming {
            return Err(TurnError::Ended { turn_id, status: t.status }.into());
        }
    }
    if !is_ndjson(&headers) {
        let bytes = read_body(body, state.limits.max_body_bytes).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        let item =
            parse_item(text).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_item", m))?;
        let seq = turns::apply(&mut turn.lock(), &state.hub, item)?;
        return Ok(Json(EventsAccepted { accepted: 1, last_seq: Some(seq) }).into_response());
    }

    let limits = &state.limits;
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut line_no: u64 = 0;
    let mut accepted: u64 = 0;
    let mut last_seq = None;
    let mut total: u64 = 0;
    // Applies one line; an error names the line and how much stayed published.
    let line = |raw: &[u8],
                line_no: u64,
                accepted: &mut u64,
                last_seq: &mut Option<u64>|
     -> Result<(), ApiError> {
        let stayed =
            |m: String| format!("line {line_no}: {m}; {accepted} earlier item(s) stay published");
        let text = std::str::from_utf8(raw).map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_line", stayed("not UTF-8".into()))
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let item = parse_item(text)
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_line", stayed(m)))?;
        match turns::apply(&mut turn.lock(), &state.hub, item) {
            Ok(seq) => {
                *accepted += 1;
                *last_seq = Some(seq);
                Ok(())
            }
            Err(e) => {
                let mut err = ApiError::from(e.clone());
                err.message = stayed(e.to_string());
                if matches!(e, TurnError::Invalid(_)) {
                    err.code = "bad_line";
                }
                Err(err)
            }
        }
    };
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body failed: {e}")))?;
        total += chunk.len() as u64;
        if total > limits.max_ndjson_body_bytes {
            return Err(ApiError::too_large(
                "body_too_large",
                format!(
                    "the NDJSON body is larger than {} bytes; {accepted} item(s) stay published",
                    limits.max_ndjson_body_bytes
                ),
            ));
        }
        let scanned = buf.len();
        buf.extend_from_slice(&chunk);
        let mut from = scanned;
        while let Some(pos) = buf[from..].iter().position(|b| *b == b'\n') {
            let raw = buf.split_to(from + pos + 1);
            line_no += 1;
            if raw.len() - 1 > limits.max_ndjson_line_bytes {
                return Err(line_too_large(line_no, limits.max_ndjson_line_bytes, accepted));
            }
            line(&raw[..raw.len() - 1], line_no, &mut accepted, &mut last_seq)?;
            from = 0;
        }
        if buf.len() > limits.max_ndjson_line_bytes {
            return Err(line_too_large(line_no + 1, limits.max_ndjson_line_bytes, accepted));
        }
    }
    if buf.has_remaining() {
        line_no += 1;
        line(&buf, line_no, &mut accepted, &mut last_seq)?;
    }
    Ok(Json(EventsAccepted { accepted, last_seq }).into_response())
}

fn line_too_large(line_no: u64, max: usize, accepted: u64) -> ApiError {
    ApiError::too_large(
        "line_too_large",
        format!(
            "line {line_no}: longer than {max} bytes (GATEWAY_MAX_NDJSON_LINE_BYTES); {accepted} earlier item(s) stay published"
        ),
    )
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
    let (accepted, fresh) = state.notifications.publish(&state.hub, req);
    if fresh {
        state.metrics.notifications.increment(1);
    } else {
        state.metrics.notifications_deduplicated.increment(1);
    }
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}
