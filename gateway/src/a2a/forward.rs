//! `SendMessage` / `SendStreamingMessage`: the message goes to the configured agent
//! (`GATEWAY_A2A_AGENT_URL`) as `{"user_id","tenant","message"}`; the agent creates a task for
//! the user through the producer API and answers its `{"task_id"}`; the caller gets that task
//! (or its stream). The gateway never runs an agent itself.

use axum::response::Response;
use serde_json::{Value, json};

use super::rpc::{Call, RpcError, ok};
use super::{model, subscribe};
use crate::auth::Principal;
use crate::state::AppState;

pub async fn send(state: &AppState, p: &Principal, call: &Call) -> Result<Response, RpcError> {
    let a = &state.a2a;
    let Some(url) = &a.agent_url else {
        return Err(RpcError::new(-32004, "no agent takes messages here (GATEWAY_A2A_AGENT_URL)"));
    };
    let Some(message @ Value::Object(_)) = call.params.get("message") else {
        return Err(RpcError::params("\"message\" must be an A2A Message object"));
    };
    let user = p.user_id.to_string();
    let body = json!({"user_id": user, "tenant": p.tenant.as_deref(), "message": message});
    let agent_down = |why: String| {
        tracing::warn!(%url, why, "the A2A agent did not take a message");
        RpcError::new(-32603, "the agent could not take the message now")
    };
    let reply = a.http.post(url).json(&body).send().await.map_err(|e| agent_down(e.to_string()))?;
    if !reply.status().is_success() {
        return Err(agent_down(format!("status {}", reply.status())));
    }
    let reply: Value = reply.json().await.map_err(|e| agent_down(e.to_string()))?;
    let Some(task_id) = reply.get("task_id").and_then(Value::as_str) else {
        return Err(agent_down("no task_id in its answer".into()));
    };
    // The agent's task must be this user's: another's looks like no task at all.
    let task = match state.tasks.snapshot(&user, task_id).await {
        Ok((t, _)) => t,
        Err(_) => return Err(agent_down(format!("task {task_id:?} is not the caller's"))),
    };
    if call.method == "SendStreamingMessage" {
        return subscribe::start_any(state, p, call.id.clone(), task_id).await;
    }
    Ok(ok(&call.id, json!({"task": model::task(&task, true)})))
}
