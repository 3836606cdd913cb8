//! The producer API: start turns, stream their events (JSON or NDJSON as it arrives), read a
//! turn's state, send notifications.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use wire::api::{
    CreateNotification, CreateTurn, Disposition, EventItem, EventsAccepted, NotificationReply,
    TurnStateSnapshot,
};

use super::extract::{PathId, body_timeout, read_body, read_json};
use super::items::parse_item;
use crate::auth::Authenticated;
use crate::auth::Principal;
use crate::domain::{Applied, NewTurn, TurnError};
use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;

fn require_publish(p: &Principal) -> Result<(), ApiError> {
    if p.publish { Ok(()) } else { Err(ApiError::insufficient_scope(wire::SCOPE_PUBLISH)) }
}

fn check_name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if !wire::api::valid_name(value, max) {
        return Err(ApiError::bad_request(format!(
            "\"{field}\" must be a string of 1-{max} bytes without control characters"
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
    read_json(body, &state.limits).await
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
        turn_id: req.turn_id.unwrap_or_else(|| ids::fresh("t")),
        meta: req.meta,
    };
    let (created, fresh) = state.turns.create(new).await?;
    if fresh {
        state.metrics.turns_started.increment(1);
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

/// `POST /v1/turns/{turn_id}/events`: one JSON item, or NDJSON published as the body arrives
/// (the lines each chunk completes, as one batch). A bad line or an ended turn is answered at
/// once, naming the line; earlier lines stay published.
pub async fn turn_events(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(turn_id): PathId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_publish(&p)?;
    if !is_ndjson(&headers) {
        let bytes = read_body(body, &state.limits).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
        let item =
            parse_item(text).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_item", m))?;
        let applied = state.turns.apply(&turn_id, vec![item]).await;
        if let Some(e) = applied.refused {
            return Err(e.into());
        }
        return Ok(Json(EventsAccepted { accepted: 1, last_seq: applied.last_seq }).into_response());
    }

    // A stream for an unknown or ended turn is refused before its first line arrives.
    let t = state.turns.state(&turn_id).await?;
    if t.status != wire::TurnStatus::Streaming {
        return Err(TurnError::Ended { turn_id, status: t.status }.into());
    }
    let limits = &state.limits;
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut batch = Batch::default();
    let mut total: u64 = 0;
    // A body that completes no item for this long is cut off (408): a trickle does not hold
    // the connection and the turn open. One timer for the whole body, moved only when it fires
    // early (an item came meanwhile): no timer work per chunk on the hot path.
    let idle = limits.body_idle_timeout;
    let mut last_item = tokio::time::Instant::now();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = &mut timer => {
                if last_item.elapsed() < idle {
                    timer.as_mut().reset(last_item + idle);
                    continue;
                }
                batch.apply(&state, &turn_id).await?;
                return Err(batch.at(body_timeout(limits), batch.line_no + 1));
            }
        };
        let Some(chunk) = next else { break };
        let lines_before = batch.line_no;
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body failed: {e}")))?;
        total += chunk.len() as u64;
        if total > limits.max_ndjson_body_bytes {
            batch.apply(&state, &turn_id).await?;
            return Err(ApiError::too_large(
                "body_too_large",
                format!(
                    "the NDJSON body is larger than {} bytes; {} item(s) stay published",
                    limits.max_ndjson_body_bytes, batch.accepted
                ),
            ));
        }
        let scanned = buf.len();
        buf.extend_from_slice(&chunk);
        let mut from = scanned;
        while let Some(pos) = buf[from..].iter().position(|b| *b == b'\n') {
            let raw = buf.split_to(from + pos + 1);
            from = 0;
            batch.line(&state, &turn_id, &raw[..raw.len() - 1]).await?;
        }
        if buf.len() > limits.max_ndjson_line_bytes {
            batch.line_no += 1;
            return Err(batch.too_long(&state, &turn_id).await);
        }
        batch.apply(&state, &turn_id).await?;
        if batch.line_no > lines_before {
            last_item = tokio::time::Instant::now();
        }
    }
    if buf.has_remaining() {
        batch.line(&state, &turn_id, &buf).await?;
    }
    batch.apply(&state, &turn_id).await?;
    Ok(Json(EventsAccepted { accepted: batch.accepted, last_seq: batch.last_seq }).into_response())
}

/// The NDJSON lines read but not yet applied, and what the request has published so far.
#[derive(Default)]
struct Batch {
    items: Vec<EventItem>,
    /// The line number of each item in `items`.
    lines: Vec<u64>,
    /// Lines read so far (blank ones included).
    line_no: u64,
    accepted: u64,
    last_seq: Option<u64>,
}

impl Batch {
    /// Takes one complete line. A bad one is answered at once, after the lines before it are
    /// applied.
    async fn line(&mut self, state: &AppState, turn_id: &str, raw: &[u8]) -> Result<(), ApiError> {
        self.line_no += 1;
        if raw.len() > state.limits.max_ndjson_line_bytes {
            return Err(self.too_long(state, turn_id).await);
        }
        let parsed = match std::str::from_utf8(raw) {
            Err(_) => Err("not UTF-8".to_owned()),
            Ok(text) if text.trim().is_empty() => return Ok(()),
            Ok(text) => parse_item(text.trim()),
        };
        match parsed {
            Ok(item) => {
                self.items.push(item);
                self.lines.push(self.line_no);
                Ok(())
            }
            Err(m) => {
                self.apply(state, turn_id).await?;
                Err(self.at(ApiError::new(StatusCode::BAD_REQUEST, "bad_line", m), self.line_no))
            }
        }
    }

    /// The current line is over the limit: apply what came before, then say so.
    async fn too_long(&mut self, state: &AppState, turn_id: &str) -> ApiError {
        if let Err(e) = self.apply(state, turn_id).await {
            return e;
        }
        let max = state.limits.max_ndjson_line_bytes;
        let e = ApiError::too_large(
            "line_too_large",
            format!("longer than {max} bytes (GATEWAY_MAX_NDJSON_LINE_BYTES)"),
        );
        self.at(e, self.line_no)
    }

    /// Publishes the lines read so far, as one batch.
    async fn apply(&mut self, state: &AppState, turn_id: &str) -> Result<(), ApiError> {
        if self.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.items);
        let lines = std::mem::take(&mut self.lines);
        let Applied { accepted, last_seq, refused } = state.turns.apply(turn_id, items).await;
        self.accepted += accepted;
        self.last_seq = last_seq.or(self.last_seq);
        let Some(e) = refused else { return Ok(()) };
        let line_no = lines.get(accepted as usize).copied().unwrap_or(self.line_no);
        let invalid = matches!(e, TurnError::Invalid(_));
        let mut err = ApiError::from(e);
        if invalid {
            err.code = "bad_line";
        }
        Err(self.at(err, line_no))
    }

    /// Names the line and how much of the body stays published.
    fn at(&self, mut e: ApiError, line_no: u64) -> ApiError {
        e.message = format!(
            "line {line_no}: {}; {} earlier item(s) stay published",
            e.message, self.accepted
        );
        e
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
    let (reply, fresh) = state.notes.notify(req).await?;
    if fresh {
        state.metrics.notifications.increment(1);
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
