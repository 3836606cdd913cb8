//! Tasks over HTTP (PROTOCOL.md v1.1, §Tasks): the producer creates and streams them; the task
//! hub lists, reads and cancels them.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use store_client::TaskCursor;
use wire::task::{CreateTask, TaskItem, TaskPage};

use super::extract::PathId;
use super::ndjson;
use super::producer::{check_id, check_name, new_work, require_publish};
use crate::auth::Authenticated;
use crate::domain::tasks::Which;
use crate::domain::{Applied, TaskError};
use crate::error::ApiError;
use crate::ids;
use crate::state::AppState;

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        let msg = e.to_string();
        match e {
            TaskError::NotFound(_) => ApiError::not_found("task_not_found", msg),
            TaskError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "task_exists", msg),
            TaskError::Ended(_) => ApiError::new(StatusCode::CONFLICT, "task_ended", msg),
            TaskError::NotCancelable(_) => {
                ApiError::new(StatusCode::CONFLICT, "task_not_cancelable", msg)
            }
            TaskError::TooLarge(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "artifact_too_large", msg)
            }
            TaskError::TooMany(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_tasks", msg)
            }
            TaskError::Invalid(_) => ApiError::bad_request(msg),
            TaskError::Unavailable(u) => u.into(),
        }
    }
}

/// `POST /v1/tasks` (producer).
pub async fn create(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CreateTask = new_work(&state, &p, body).await?;
    check_name("user_id", &req.user_id, 256)?;
    check_name("context_id", &req.context_id, 256)?;
    check_name("title", &req.title, 1_024)?;
    check_id("task_id", req.task_id.as_deref())?;
    if req.state.is_some_and(|s| s.is_terminal()) {
        return Err(ApiError::bad_request("\"state\" of a new task may not be terminal"));
    }
    if req.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("\"metadata\" must be an object"));
    }
    let task_id = req.task_id.clone().unwrap_or_else(|| ids::fresh("k"));
    let (created, fresh) = state.tasks.create(req, task_id).await?;
    let status = if fresh { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(created)).into_response())
}

/// `POST /v1/tasks/{task_id}/events` (producer): one JSON item, or NDJSON as it arrives.
pub async fn events(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(task_id): PathId,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_publish(&p)?;
    let target = TaskTarget { state: &state, task_id: &task_id };
    if !ndjson::is_ndjson(&headers) {
        return Ok(Json(ndjson::single(&target, &state.limits, body).await?).into_response());
    }
    state.tasks.check_open(&task_id).await?;
    Ok(Json(ndjson::stream(&target, &state.limits, body).await?).into_response())
}

/// A task as the target of a producer's items.
struct TaskTarget<'a> {
    state: &'a AppState,
    task_id: &'a str,
}

#[async_trait::async_trait]
impl ndjson::Target for TaskTarget<'_> {
    type Item = TaskItem;

    fn parse(&self, text: &str) -> Result<TaskItem, String> {
        serde_json::from_str(text).map_err(|e| {
            format!(
                "not a task item ({e}); expected {{\"status\":{{\"state\",\"message\"?}}}} or \
                 {{\"artifact\":{{\"artifact_id\",\"name\"?,\"parts\",\"append\"?,\"last_chunk\"?}}}}"
            )
        })
    }

    async fn apply(&self, items: Vec<TaskItem>) -> (u64, Option<u64>, Option<(ApiError, bool)>) {
        let Applied { accepted, last_seq, refused } =
            self.state.tasks.apply(self.task_id, items).await;
        let refused = refused.map(|e| {
            let invalid = matches!(e, TaskError::Invalid(_) | TaskError::TooLarge(_));
            (ApiError::from(e), invalid)
        });
        (accepted, last_seq, refused)
    }
}

/// The query of `GET /v1/tasks`.
struct ListQuery {
    which: Which,
    context: Option<String>,
    limit: usize,
    before: Option<TaskCursor>,
    user: Option<String>,
}

fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { which: Which::All, context: None, limit: 20, before: None, user: None };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "state" => {
                q.which = match &*v {
                    "active" => Which::Active,
                    "terminal" => Which::Terminal,
                    "all" | "" => Which::All,
                    _ => {
                        return Err(ApiError::bad_request(
                            "\"state\" must be active, terminal or all",
                        ));
                    }
                }
            }
            "context_id" if !v.is_empty() => q.context = Some(v.into_owned()),
            "user_id" if !v.is_empty() => q.user = Some(v.into_owned()),
            "limit" => {
                q.limit = v.parse().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                    ApiError::bad_request("\"limit\" must be a whole number 1-100")
                })?;
            }
            "before" if !v.is_empty() => {
                q.before = Some(TaskCursor::decode(&v).map_err(|_| {
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
    Ok(q)
}

/// `GET /v1/tasks`: the caller's tasks (`gateway.admin` may name `user_id`), no artifacts.
pub async fn list(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = list_query(query.as_deref())?;
    let user = q.user.clone().unwrap_or_else(|| p.user_id.to_string());
    super::extract::own_or_admin(&p, &user, &headers, "tasks.list", "list a user's tasks")?;
    let (tasks, next) =
        state.tasks.list(&user, q.which, q.context.as_deref(), q.limit, q.before.as_ref()).await?;
    let tasks = tasks.into_iter().map(|(_, t)| t).collect();
    Ok(Json(TaskPage { tasks, next: next.map(|c| c.encode()) }).into_response())
}

/// `GET /v1/tasks/{task_id}`: owner, producer or admin; 404 for anyone else.
pub async fn get(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(task_id): PathId,
) -> Result<Response, ApiError> {
    let user = match p.publish || p.admin {
        true => state.tasks.owner(&task_id).await?,
        false => p.user_id.to_string(),
    };
    let (task, _) = state.tasks.snapshot(&user, &task_id).await?;
    Ok(Json(task).into_response())
}

/// `POST /v1/tasks/{task_id}/cancel`: the owner cancels it.
pub async fn cancel(
    State(state): State<AppState>,
    Authenticated(p): Authenticated,
    PathId(task_id): PathId,
) -> Result<Response, ApiError> {
    let task = state.tasks.cancel(&p.user_id, &task_id).await?;
    Ok(Json(task).into_response())
}
