//! `POST /a2a`: the JSON-RPC 2.0 envelope, the `A2A-Version` check, errors as JSON-RPC error
//! objects (HTTP 200, streaming methods included), and the methods over tasks and turns.

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wire::task::Task;

use super::model;
use crate::api::Authenticated;
use crate::domain::TaskError;
use crate::domain::tasks::Which;
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON-RPC error; `reason` (for A2A's own codes) goes into an `ErrorInfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub reason: &'static str,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        let reason = match code {
            -32001 => "TASK_NOT_FOUND",
            -32002 => "TASK_NOT_CANCELABLE",
            -32004 => "UNSUPPORTED_OPERATION",
            -32009 => "VERSION_NOT_SUPPORTED",
            -32700 => "PARSE_ERROR",
            -32600 => "INVALID_REQUEST",
            -32601 => "METHOD_NOT_FOUND",
            -32602 => "INVALID_PARAMS",
            _ => "INTERNAL_ERROR",
        };
        RpcError { code, message: message.into(), reason }
    }

    pub fn not_found(id: &str) -> Self {
        RpcError::new(-32001, format!("task {id:?} not found"))
    }

    pub fn params(message: impl Into<String>) -> Self {
        RpcError::new(-32602, message)
    }

    /// The whole response: `{"jsonrpc","id","error"}`.
    pub fn body(&self, id: &Value) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if (-32099..=-32000).contains(&self.code) {
            error["data"] = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": self.reason,
                "domain": "a2a-protocol.org",
                "metadata": {},
            }]);
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

impl From<TaskError> for RpcError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(id) => RpcError::not_found(&id),
            TaskError::NotCancelable(id) | TaskError::Ended(id) => {
                RpcError::new(-32002, format!("task {id:?} has reached a terminal state"))
            }
            TaskError::Unavailable(u) => RpcError::new(-32603, u.message),
            other => RpcError::new(-32603, other.to_string()),
        }
    }
}

pub fn ok(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn fail(id: &Value, e: RpcError) -> Response {
    Json(e.body(id)).into_response()
}

/// `A2A-Version` from the header, else the query: `1.0` or absent is served.
fn version_ok(headers: &HeaderMap, query: Option<&str>) -> Result<(), RpcError> {
    let from_query = || {
        form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k.eq_ignore_ascii_case("a2a-version"))
            .map(|(_, v)| v.into_owned())
    };
    let v = match headers.get("a2a-version") {
        Some(h) => Some(h.to_str().unwrap_or("?").trim().to_owned()),
        None => from_query(),
    };
    match v.as_deref() {
        None | Some("1.0") => Ok(()),
        Some(other) => Err(RpcError::new(
            -32009,
            format!("A2A-Version {other:?} is not supported; this server speaks 1.0"),
        )),
    }
}

/// A parsed request: its id, method and params (an object).
pub struct Call {
    pub id: Value,
    pub method: String,
    pub params: serde_json::Map<String, Value>,
}

fn envelope(bytes: &[u8]) -> Result<Call, (Value, RpcError)> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| (Value::Null, RpcError::new(-32700, format!("the body is not JSON: {e}"))))?;
    let invalid = |m: &str| RpcError::new(-32600, m.to_owned());
    let Value::Object(mut map) = v else {
        return Err((
            Value::Null,
            invalid("a request must be a JSON object (batches are not served)"),
        ));
    };
    let id = map.remove("id").unwrap_or(Value::Null);
    if !(id.is_string() || id.is_number() || id.is_null()) {
        return Err((Value::Null, invalid("\"id\" must be a string, a number or null")));
    }
    if map.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err((id, invalid("\"jsonrpc\" must be \"2.0\"")));
    }
    let Some(Value::String(method)) = map.remove("method") else {
        return Err((id, invalid("\"method\" must be a string")));
    };
    let params = match map.remove("params") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err((id, RpcError::params("\"params\" must be an object"))),
    };
    Ok(Call { id, method, params })
}

pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    auth: Result<Authenticated, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    let Authenticated(p) = auth?;
    let bytes = crate::api::read_body(body, &state.limits).await?;
    let call = match envelope(&bytes) {
        Ok(c) => c,
        Err((id, e)) => return Ok(fail(&id, e)),
    };
    if let Err(e) = version_ok(&headers, query.as_deref()) {
        return Ok(fail(&call.id, e));
    }
    let user = p.user_id.to_string();
    let last_event_id =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let result = match call.method.as_str() {
        "GetTask" => get_task(&state, &user, &call).await.map(|v| ok(&call.id, v)),
        "CancelTask" => cancel_task(&state, &user, &call).await.map(|v| ok(&call.id, v)),
        "ListTasks" => list_tasks(&state, &user, &call).await.map(|v| ok(&call.id, v)),
        "SubscribeToTask" => match string_param(&call, "id") {
            Ok(id) => {
                let lei = last_event_id.as_deref();
                super::subscribe::start(&state, &p, call.id.clone(), &id, lei).await
            }
            Err(e) => Err(e),
        },
        "SendMessage" | "SendStreamingMessage" => super::forward::send(&state, &p, &call).await,
        other => Err(RpcError::new(-32601, format!("no method {other:?}"))),
    };
    Ok(result.unwrap_or_else(|e| fail(&call.id, e)))
}

pub fn string_param(call: &Call, name: &str) -> Result<String, RpcError> {
    match call.params.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
        _ => Err(RpcError::params(format!("\"{name}\" must be a string of 1-256 bytes"))),
    }
}

/// The user's task, or turn, of that id as an A2A Task.
pub async fn lookup(state: &AppState, user: &str, id: &str) -> Result<Value, RpcError> {
    match state.tasks.snapshot(user, id).await {
        Ok((t, _)) => return Ok(model::task(&t, true)),
        Err(TaskError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match state.turns.snapshot(user, id).await {
        Ok(s) => Ok(model::turn_task(&s, &crate::ids::now_rfc3339())),
        Err(_) => Err(RpcError::not_found(id)),
    }
}

async fn get_task(state: &AppState, user: &str, call: &Call) -> Result<Value, RpcError> {
    lookup(state, user, &string_param(call, "id")?).await
}

async fn cancel_task(state: &AppState, user: &str, call: &Call) -> Result<Value, RpcError> {
    let id = string_param(call, "id")?;
    match state.tasks.cancel(user, &id).await {
        Ok(t) => return Ok(model::task(&t, true)),
        Err(TaskError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match state.turns.cancel(user, &id).await {
        Ok(_) => lookup(state, user, &id).await,
        Err(crate::domain::TurnError::Ended { .. }) => {
            Err(RpcError::new(-32002, format!("turn {id:?} has ended")))
        }
        Err(_) => Err(RpcError::not_found(&id)),
    }
}

async fn list_tasks(state: &AppState, user: &str, call: &Call) -> Result<Value, RpcError> {
    let p = &call.params;
    let context = match p.get("contextId") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if !c.is_empty() => Some(c.clone()),
        Some(Value::String(_)) => None,
        Some(_) => return Err(RpcError::params("\"contextId\" must be a string")),
    };
    let state_filter = match p.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "TASK_STATE_UNSPECIFIED" => None,
        Some(Value::String(s)) => Some(model::parse_state(s).ok_or_else(|| {
            RpcError::params(format!("\"status\" {s:?} is not a TASK_STATE_* name"))
        })?),
        Some(_) => return Err(RpcError::params("\"status\" must be a TASK_STATE_* name")),
    };
    let size = match p.get("pageSize") {
        None | Some(Value::Null) => 50,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| RpcError::params("\"pageSize\" must be a whole number 1-100"))?
            as usize,
    };
    let token = match p.get("pageToken").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        Some(t) => Some(
            store_client::TaskCursor::decode(t)
                .map_err(|_| RpcError::params("\"pageToken\" is not one this server gave"))?,
        ),
        None => None,
    };
    let artifacts = p.get("includeArtifacts").and_then(Value::as_bool).unwrap_or(false);
    let which = match state_filter {
        Some(s) if s.is_terminal() => Which::Terminal,
        Some(_) => Which::Active,
        None => Which::All,
    };
    let takes = |t: &Task| state_filter.is_none_or(|s| s == t.state);
    // One pass over the hub from its start: every match counts toward `totalSize` (up to
    // COUNT_MAX), and those after the page token fill this page; one more tells a next page.
    let (mut page, mut more_follow, mut total, mut after) = (Vec::new(), false, 0, None);
    loop {
        let (got, more) =
            state.tasks.list(user, which, context.as_deref(), 100, after.as_ref()).await?;
        for (c, t) in got.into_iter().filter(|(_, t)| takes(t)) {
            total += 1;
            if token.as_ref().is_none_or(|tok| c < *tok) {
                if page.len() < size {
                    page.push((c, t));
                } else {
                    more_follow = true;
                }
            }
        }
        after = more;
        if after.is_none() || (total >= COUNT_MAX && more_follow) {
            break;
        }
    }
    let total = total.min(COUNT_MAX);
    let next_token = match (more_follow, page.last()) {
        (true, Some((c, _))) => c.encode(),
        _ => String::new(),
    };
    let mut tasks = Vec::with_capacity(page.len());
    for (_, t) in &page {
        let full = match artifacts {
            true => state
                .tasks
                .snapshot(user, &t.task_id)
                .await
                .map(|s| s.0)
                .unwrap_or_else(|_| t.clone()),
            false => t.clone(),
        };
        tasks.push(model::task(&full, artifacts));
    }
    Ok(json!({"tasks": tasks, "nextPageToken": next_token, "pageSize": size, "totalSize": total}))
}

/// The most tasks counted for `totalSize` (past it, the count says this many).
const COUNT_MAX: usize = 10_000;
