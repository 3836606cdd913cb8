//! `/demo` (only under `--dev`): a page that shows the whole product in a minute, built on the
//! JavaScript SDK itself (served from `clients/js/src`, compiled in). Dev-only helpers give the
//! page a token and make the gateway stream a canned answer, send a notification or run a task
//! through the real domain paths, as a producer would.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use wire::api::{EndItem, EventItem};

use crate::auth::Authenticated;
use crate::domain::NewTurn;
use crate::error::ApiError;
use crate::state::AppState;

const PAGE: &str = include_str!("demo.html");
const SDK: [(&str, &str); 6] = [
    ("index.js", include_str!("../../../clients/js/src/index.js")),
    ("client.js", include_str!("../../../clients/js/src/client.js")),
    ("transport.js", include_str!("../../../clients/js/src/transport.js")),
    ("turns.js", include_str!("../../../clients/js/src/turns.js")),
    ("backoff.js", include_str!("../../../clients/js/src/backoff.js")),
    ("token.js", include_str!("../../../clients/js/src/token.js")),
];
const ANSWER: &str = "Here is what I found. The gateway streams every token of this answer to \
    each of your devices, in order, and a device that drops comes back exactly where it left: \
    nothing missing, nothing twice. Open this page in a second window to see both stay in step.";

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/demo", get(|| async { Html(PAGE) }))
        .route("/demo/sdk/{file}", get(sdk))
        .route("/demo/token", get(token))
        .route("/demo/ask", post(ask))
        .route("/demo/notify", post(notify))
        .route("/demo/task", post(task))
}

async fn sdk(Path(file): Path<String>) -> Response {
    match SDK.iter().find(|(name, _)| *name == file) {
        Some((_, text)) => {
            ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], *text).into_response()
        }
        None => ApiError::not_found("not_found", "no such file").into_response(),
    }
}

/// A user token for the page (dev only: anyone may be anyone).
async fn token(
    State(state): State<AppState>,
    Query(q): Query<Value>,
) -> Result<Json<Value>, ApiError> {
    let user = q.get("user").and_then(Value::as_str).unwrap_or("dev-user");
    if !wire::api::valid_name(user, 64) {
        return Err(ApiError::bad_request("\"user\" must be 1-64 bytes"));
    }
    let Some(secret) = &state.dev_secret else {
        return Err(ApiError::not_found("not_found", "demo tokens need an HS256 secret"));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = wire::Claims::new(user, now, 3600);
    Ok(Json(json!({"token": crate::auth::sign_hs256(secret, &claims)})))
}

/// Streams the canned answer as a turn of the caller, about 40 tokens a second.
async fn ask(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let turn_id = crate::ids::fresh("t");
    let new = NewTurn {
        user_id: p.user_id.to_string(),
        conversation_id: "demo".into(),
        turn_id: turn_id.clone(),
        meta: None,
        trace: None,
    };
    state.turns.create(new).await?;
    let (turns, id, stop) = (state.turns.clone(), turn_id.clone(), state.shutdown.clone());
    state.connections.spawn(async move {
        for word in ANSWER.split_inclusive(' ') {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
            }
            if turns.apply(&id, vec![EventItem::Delta(word.to_owned())]).await.refused.is_some() {
                return; // cancelled from a device
            }
        }
        let end = EventItem::End(EndItem { status: wire::TurnStatus::Completed, error: None });
        turns.apply(&id, vec![end]).await;
    });
    Ok(Json(json!({"turn_id": turn_id})))
}

async fn notify(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let req = wire::api::CreateNotification {
        user_id: p.user_id.to_string(),
        category: "demo".into(),
        priority: Some(wire::Priority::High),
        title: "Your report is ready".into(),
        body: "Open the task hub to read it".into(),
        data: None,
        dedup_key: None,
    };
    let (reply, _) = state.notes.notify(req).await?;
    Ok(Json(serde_json::to_value(reply).unwrap_or_default()))
}

/// A task of the caller that works, writes an artifact in a few chunks, and completes.
async fn task(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
) -> Result<Json<Value>, ApiError> {
    let req = wire::task::CreateTask {
        user_id: p.user_id.to_string(),
        context_id: "demo".into(),
        title: "Writing your weekly report".into(),
        task_id: None,
        state: None,
        metadata: None,
    };
    let task_id = crate::ids::fresh("k");
    state.tasks.create(req, task_id.clone()).await?;
    let (tasks, id, stop) = (state.tasks.clone(), task_id.clone(), state.shutdown.clone());
    state.connections.spawn(async move {
        let item = |v: Value| serde_json::from_value::<wire::task::TaskItem>(v).ok();
        let mut steps = vec![item(json!({"status": {"state": "working", "message": "gathering"}}))];
        for (i, part) in ["Sales up 4 %. ", "Two launches. ", "No incidents."].iter().enumerate() {
            steps.push(item(json!({"artifact": {"artifact_id": "report", "name": "report", "parts": [{"text": part}], "append": i > 0}})));
        }
        steps.push(item(json!({"status": {"state": "completed", "message": "done"}})));
        for step in steps.into_iter().flatten() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(700)) => {}
            }
            if tasks.apply(&id, vec![step]).await.refused.is_some() {
                return;
            }
        }
    });
    Ok(Json(json!({"task_id": task_id})))
}
