//! Our tasks and turns as A2A v1.0 objects (ProtoJSON of a2aproject/A2A `a2a.proto`: camelCase,
//! `TASK_STATE_*` enum names, UTC timestamps with milliseconds), and log events as the
//! `StreamResponse` of `SubscribeToTask`.

use serde_json::{Map, Value, json};
use wire::task::{Artifact, Part, Task, TaskState};
use wire::{EventBody, TurnStatus};

/// The artifact a turn's text is in.
pub const RESPONSE: &str = "response";

pub fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Submitted => "TASK_STATE_SUBMITTED",
        TaskState::Working => "TASK_STATE_WORKING",
        TaskState::InputRequired => "TASK_STATE_INPUT_REQUIRED",
        TaskState::AuthRequired => "TASK_STATE_AUTH_REQUIRED",
        TaskState::Completed => "TASK_STATE_COMPLETED",
        TaskState::Failed => "TASK_STATE_FAILED",
        TaskState::Canceled => "TASK_STATE_CANCELED",
        TaskState::Rejected => "TASK_STATE_REJECTED",
    }
}

pub fn parse_state(name: &str) -> Option<TaskState> {
    TaskState::ALL.into_iter().find(|s| state_name(*s) == name)
}

/// A turn's status as a task state.
pub fn turn_state(s: TurnStatus) -> TaskState {
    match s {
        TurnStatus::Streaming => TaskState::Working,
        TurnStatus::Completed => TaskState::Completed,
        TurnStatus::Cancelled => TaskState::Canceled,
        TurnStatus::Failed => TaskState::Failed,
    }
}

/// A `TaskStatus`; its message (when there is one) an agent Message with one text part, its
/// id fixed by the task and time so a resubscribe sends the same one.
pub fn status(task_id: &str, state: TaskState, message: Option<&str>, timestamp: &str) -> Value {
    let mut s = json!({"state": state_name(state), "timestamp": timestamp});
    if let Some(text) = message {
        s["message"] = json!({
            "messageId": format!("{task_id}@{timestamp}"),
            "role": "ROLE_AGENT",
            "parts": [{"text": text}],
        });
    }
    s
}

fn part(p: &Part) -> Value {
    match p {
        Part::Text { text } => json!({"text": text}),
        Part::Data { data } => json!({"data": data}),
    }
}

pub fn artifact(a: &Artifact) -> Value {
    let mut v =
        json!({"artifactId": a.artifact_id, "parts": a.parts.iter().map(part).collect::<Vec<_>>()});
    if let Some(name) = &a.name {
        v["name"] = Value::from(name.as_str());
    }
    v
}

/// A task as an A2A `Task`; its title travels in `metadata.title`.
pub fn task(t: &Task, with_artifacts: bool) -> Value {
    let mut metadata = match &t.metadata {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    metadata.insert("title".into(), Value::from(t.title.as_str()));
    let mut v = json!({
        "id": t.task_id,
        "contextId": t.context_id,
        "status": status(&t.task_id, t.state, t.message.as_deref(), &t.updated_at),
        "metadata": metadata,
    });
    if with_artifacts {
        let arts = t.artifacts.as_deref().unwrap_or_default();
        v["artifacts"] = arts.iter().map(artifact).collect();
    }
    v
}

/// A turn as an A2A `Task`: its text so far is the one artifact `response`.
pub fn turn_task(s: &crate::domain::Snapshot, timestamp: &str) -> Value {
    json!({
        "id": s.turn_id,
        "contextId": s.conversation_id,
        "status": status(&s.turn_id, turn_state(s.status), None, timestamp),
        "artifacts": [{"artifactId": RESPONSE, "name": RESPONSE, "parts": [{"text": s.text}]}],
    })
}

/// What a log event of the followed task (or turn) is to its subscriber: a `StreamResponse`
/// and whether it ends the stream. `None`: not about it, or nothing to say (a trace).
pub fn update(ev: &EventBody, id: &str, context_id: &str) -> Option<(Value, bool)> {
    match ev {
        EventBody::TaskStatus { task_id, state, message, timestamp, .. } if task_id == id => {
            let s = status(id, *state, message.as_deref(), timestamp);
            let v = json!({"statusUpdate": {"taskId": id, "contextId": context_id, "status": s}});
            Some((v, state.is_terminal()))
        }
        EventBody::TaskArtifact { task_id, artifact_id, name, parts, append, last_chunk }
            if task_id == id =>
        {
            let a = Artifact {
                artifact_id: artifact_id.clone(),
                name: name.clone(),
                parts: parts.clone(),
            };
            let v = json!({"artifactUpdate": {
                "taskId": id, "contextId": context_id, "artifact": artifact(&a),
                "append": append, "lastChunk": last_chunk,
            }});
            Some((v, false))
        }
        EventBody::TurnDelta { turn_id, text, .. } if turn_id == id => {
            let v = json!({"artifactUpdate": {
                "taskId": id, "contextId": context_id,
                "artifact": {"artifactId": RESPONSE, "name": RESPONSE, "parts": [{"text": text}]},
                "append": true, "lastChunk": false,
            }});
            Some((v, false))
        }
        EventBody::TurnEnd { turn_id, status: st, .. } if turn_id == id => {
            let now = crate::ids::now_rfc3339();
            let s = status(id, turn_state(*st), None, &now);
            let v = json!({"statusUpdate": {"taskId": id, "contextId": context_id, "status": s}});
            Some((v, true))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_by_their_proto_names() {
        for s in TaskState::ALL {
            assert_eq!(parse_state(state_name(s)), Some(s));
        }
        assert_eq!(parse_state("working"), None);
    }

    #[test]
    fn a_task_reads_as_a2a() {
        let t = Task {
            task_id: "k".into(),
            user_id: "u".into(),
            context_id: "c".into(),
            title: "T".into(),
            state: TaskState::InputRequired,
            message: Some("which date?".into()),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:01.000Z".into(),
            artifacts: Some(vec![Artifact {
                artifact_id: "a".into(),
                name: None,
                parts: vec![Part::Data { data: json!({"x": 1}) }],
            }]),
            metadata: json!({"m": 2}),
        };
        let v = task(&t, true);
        assert_eq!(v["status"]["state"], "TASK_STATE_INPUT_REQUIRED");
        assert_eq!(v["status"]["message"]["role"], "ROLE_AGENT");
        assert_eq!(v["status"]["message"]["parts"][0]["text"], "which date?");
        assert_eq!(v["artifacts"][0], json!({"artifactId": "a", "parts": [{"data": {"x": 1}}]}));
        assert_eq!(v["metadata"], json!({"m": 2, "title": "T"}));
        assert!(task(&t, false).get("artifacts").is_none());
    }
}
