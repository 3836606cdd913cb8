//! Tasks (PROTOCOL.md v1.1, §Tasks): long-running agent work in a user's log, its states (those
//! of A2A), the task object every device's task hub shows, and the producer's bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task's state. The last four are terminal: nothing changes a task after one of them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::AuthRequired,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Rejected,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input_required",
            TaskState::AuthRequired => "auth_required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One part of an artifact: `{"text": …}` or `{"data": …}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum Part {
    Text { text: String },
    Data { data: Value },
}

/// An artifact as the task object holds it: every chunk so far, parts in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    pub artifact_id: String,
    pub name: Option<String>,
    pub parts: Vec<Part>,
}

/// The task object (`GET /v1/tasks/{id}`, `task.snapshot`); lists leave `artifacts` out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    pub task_id: String,
    pub user_id: String,
    pub context_id: String,
    pub title: String,
    pub state: TaskState,
    pub message: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: the last status change.
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Vec<Artifact>>,
    #[serde(default)]
    pub metadata: Value,
}

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateTask {
    pub user_id: String,
    pub context_id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// 201 (created) or 200 (the same task again) to `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskCreated {
    pub task_id: String,
    /// The seq of its first `task.status`.
    pub seq: u64,
}

/// One item of `POST /v1/tasks/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskItem {
    Status(StatusItem),
    Artifact(ArtifactItem),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusItem {
    pub state: TaskState,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArtifactItem {
    pub artifact_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub parts: Vec<Part>,
    #[serde(default)]
    pub append: bool,
    #[serde(default)]
    pub last_chunk: bool,
}

/// `GET /v1/tasks`: a page of the caller's tasks, newest status change first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_as_the_protocol_writes_them() {
        let s: TaskItem =
            serde_json::from_str(r#"{"status":{"state":"input_required","message":"ok?"}}"#)
                .unwrap();
        assert_eq!(
            s,
            TaskItem::Status(StatusItem {
                state: TaskState::InputRequired,
                message: Some("ok?".into())
            })
        );
        let a: TaskItem = serde_json::from_str(
            r#"{"artifact":{"artifact_id":"a","parts":[{"text":"x"},{"data":{"k":1}}],"append":true}}"#,
        )
        .unwrap();
        let TaskItem::Artifact(a) = a else { panic!() };
        assert_eq!(a.parts[1], Part::Data { data: serde_json::json!({"k":1}) });
        assert!(a.append && !a.last_chunk && a.name.is_none());
        assert!(serde_json::from_str::<TaskItem>(r#"{"status":{"state":"done"}}"#).is_err());
        assert!(serde_json::from_str::<Part>(r#"{"text":1}"#).is_err());
        assert!(serde_json::from_str::<Part>(r#"{}"#).is_err());
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = TaskState::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal.len(), 4);
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
