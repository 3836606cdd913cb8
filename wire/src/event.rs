//! Log events: what every endpoint of a user receives, in `seq` order (PROTOCOL.md, "Log events").

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event of a user's log: its position and what happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEvent {
    /// Position in the user's log within its epoch: 1, 2, 3, … with no gaps.
    pub seq: u64,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What a log event says; the JSON `type` is the tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "turn.start")]
    TurnStart {
        turn_id: String,
        conversation_id: String,
        /// RFC 3339.
        created_at: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Value>,
    },
    #[serde(rename = "turn.delta")]
    TurnDelta {
        turn_id: String,
        /// 0, 1, 2, … within the turn.
        index: u64,
        text: String,
    },
    #[serde(rename = "turn.trace")]
    TurnTrace {
        turn_id: String,
        kind: String,
        #[serde(default)]
        data: Value,
    },
    #[serde(rename = "turn.end")]
    TurnEnd {
        turn_id: String,
        status: TurnStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
    #[serde(rename = "notification")]
    Notification {
        id: String,
        category: String,
        priority: Priority,
        title: String,
        body: String,
        #[serde(default)]
        data: Value,
        created_at: String,
        /// v1.1: the user's unread count with this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unread_count: Option<u64>,
    },
    #[serde(rename = "notification.read")]
    NotificationRead { id: String },
    /// v1.1: the notifications a window held (quiet hours, a mute) or digested (the budget),
    /// announced once when it is over.
    #[serde(rename = "notification.digest")]
    NotificationDigest {
        count: u64,
        ids: Vec<String>,
        categories: std::collections::BTreeMap<String, u64>,
        /// `quiet_hours`, `muted` or `budget`.
        reason: String,
        from: String,
        until: String,
    },
    /// v1.1: notifications of the inbox changed state on some device.
    #[serde(rename = "notification.state")]
    NotificationState {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ids: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        all: Option<bool>,
        status: crate::api::MarkStatus,
        unread_count: u64,
        unseen_count: u64,
    },
    /// v1.1: a task was created or changed state.
    #[serde(rename = "task.status")]
    TaskStatus {
        task_id: String,
        context_id: String,
        state: crate::task::TaskState,
        message: Option<String>,
        /// RFC 3339.
        timestamp: String,
    },
    /// v1.1: a chunk of one of a task's artifacts.
    #[serde(rename = "task.artifact")]
    TaskArtifact {
        task_id: String,
        artifact_id: String,
        name: Option<String>,
        parts: Vec<crate::task::Part>,
        append: bool,
        last_chunk: bool,
    },
}

impl EventBody {
    /// The JSON `type` of the event (also the SSE `event:` name).
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::TurnStart { .. } => "turn.start",
            EventBody::TurnDelta { .. } => "turn.delta",
            EventBody::TurnTrace { .. } => "turn.trace",
            EventBody::TurnEnd { .. } => "turn.end",
            EventBody::Notification { .. } => "notification",
            EventBody::NotificationRead { .. } => "notification.read",
            EventBody::NotificationState { .. } => "notification.state",
            EventBody::NotificationDigest { .. } => "notification.digest",
            EventBody::TaskStatus { .. } => "task.status",
            EventBody::TaskArtifact { .. } => "task.artifact",
        }
    }

    /// The turn this event belongs to, if any.
    pub fn turn_id(&self) -> Option<&str> {
        match self {
            EventBody::TurnStart { turn_id, .. }
            | EventBody::TurnDelta { turn_id, .. }
            | EventBody::TurnTrace { turn_id, .. }
            | EventBody::TurnEnd { turn_id, .. } => Some(turn_id),
            _ => None,
        }
    }

    /// The task this event belongs to, if any.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            EventBody::TaskStatus { task_id, .. } | EventBody::TaskArtifact { task_id, .. } => {
                Some(task_id)
            }
            _ => None,
        }
    }
}

/// A turn's status: `streaming` until its `turn.end`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TurnStatus {
    Streaming,
    Completed,
    Cancelled,
    Failed,
}

impl TurnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Streaming => "streaming",
            TurnStatus::Completed => "completed",
            TurnStatus::Cancelled => "cancelled",
            TurnStatus::Failed => "failed",
        }
    }
}

/// A notification's priority; `normal` when the producer gives none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// v1.1: skips every preference rule, and is pushed whatever `push` says.
    Critical,
    High,
    #[default]
    Normal,
    Low,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_serializes_flat_with_seq_and_type() {
        let e = LogEvent {
            seq: 7,
            body: EventBody::TurnDelta { turn_id: "t1".into(), index: 3, text: "hi".into() },
        };
        let v: Value = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"seq":7,"type":"turn.delta","turn_id":"t1","index":3,"text":"hi"})
        );
        assert_eq!(serde_json::from_value::<LogEvent>(v).unwrap(), e);
    }

    #[test]
    fn end_omits_error_unless_failed() {
        let body =
            EventBody::TurnEnd { turn_id: "t".into(), status: TurnStatus::Completed, error: None };
        let s = serde_json::to_string(&body).unwrap();
        assert_eq!(s, r#"{"type":"turn.end","turn_id":"t","status":"completed"}"#);
    }
}
