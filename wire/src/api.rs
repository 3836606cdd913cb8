//! HTTP bodies of the producer, presence and operations APIs (PROTOCOL.md, "Producer API").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Priority, TurnStatus};

/// Every HTTP error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    /// snake_case, stable: clients branch on it.
    pub code: String,
    /// A human sentence naming the problem.
    pub message: String,
}

/// `POST /v1/turns`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateTurn {
    pub user_id: String,
    pub conversation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// 201 (created) or 200 (the same turn again) to `POST /v1/turns`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnCreated {
    pub turn_id: String,
    /// The seq of the turn's `turn.start`.
    pub seq: u64,
}

/// One item of `POST /v1/turns/{id}/events` (a JSON body, or one NDJSON line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum EventItem {
    Delta(String),
    Trace(TraceItem),
    End(EndItem),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceItem {
    pub kind: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EndItem {
    /// `completed` or `failed` (a producer cannot end a turn as `cancelled` or `streaming`).
    pub status: TurnStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// 200 to `POST /v1/turns/{id}/events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventsAccepted {
    pub accepted: u64,
    /// `null` when nothing was published.
    pub last_seq: Option<u64>,
}

/// `GET /v1/turns/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnState {
    pub turn_id: String,
    pub user_id: String,
    pub conversation_id: String,
    pub status: TurnStatus,
    pub next_index: u64,
    /// Unicode scalar values in the text so far.
    pub text_len: u64,
}

/// `GET /v1/turns/{id}?snapshot=true` (v1.1): the state with the text so far, as `turn.sync`
/// gives it, so an SSE client can join a turn mid-stream or rebuild it after `resumed: false`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnStateSnapshot {
    #[serde(flatten)]
    pub state: TurnState,
    pub text: String,
    /// Deltas with `index >= next_index` (seq above this) continue `text`.
    pub as_of_seq: u64,
}

/// `POST /v1/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateNotification {
    pub user_id: String,
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    pub title: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
}

/// What the backplane made of a notification: its id and the seq it was published at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationAccepted {
    pub id: String,
    pub seq: u64,
}

/// 202 to `POST /v1/notifications` (v1.1): `seq` is null when nothing was published (a
/// repeated `dedup_key`: the first `id` and `disposition` come back).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotificationReply {
    pub id: String,
    pub seq: Option<u64>,
    pub disposition: Disposition,
}

/// What the user's preferences made of a notification (PROTOCOL.md v1.1, §Notifications).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Delivered,
    Held,
    Digested,
    Suppressed,
}

/// A state a notification of the inbox is marked with (v1.1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MarkStatus {
    Seen,
    Read,
    Unread,
    Archived,
}

/// `POST /v1/users/{id}/notifications/mark` (v1.1): `ids`, or `all: true`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    pub status: MarkStatus,
}

/// The answer to a mark, over HTTP and as the `notification.marked` frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarkReply {
    pub updated: u64,
    pub unread_count: u64,
    pub unseen_count: u64,
}

/// One notification of the inbox (v1.1); times are RFC 3339 or null.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InboxItem {
    pub id: String,
    pub category: String,
    pub priority: crate::Priority,
    pub title: String,
    pub body: String,
    pub data: Value,
    pub created_at: String,
    pub disposition: Disposition,
    pub seen_at: Option<String>,
    pub read_at: Option<String>,
    pub archived_at: Option<String>,
}

/// `GET /v1/users/{id}/notifications` (v1.1): newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InboxPage {
    pub notifications: Vec<InboxItem>,
    pub next: Option<String>,
    pub unread_count: u64,
    pub unseen_count: u64,
}

/// `GET /v1/conversations/{id}/turns`: newest first; `next` continues with older turns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryPage {
    pub turns: Vec<HistoryTurn>,
    /// Opaque: pass it back as `before` for the next page; `null` on the last.
    pub next: Option<String>,
}

/// One finalised turn in history (its traces are not: `GET /v1/turns/{id}/traces`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryTurn {
    pub turn_id: String,
    pub conversation_id: String,
    pub user_id: String,
    /// `completed`, `cancelled` or `failed`.
    pub status: TurnStatus,
    pub text: String,
    /// RFC 3339.
    pub created_at: String,
    pub completed_at: String,
    /// The text was longer than the store keeps and was cut (at a character boundary).
    #[serde(default)]
    pub truncated: bool,
    /// The `meta` given when the turn started (`null` if none).
    #[serde(default)]
    pub meta: Value,
}

/// `GET /v1/turns/{id}/traces`: in the order the producer sent them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceList {
    pub turn_id: String,
    pub traces: Vec<TraceItem>,
}

/// `DELETE /v1/conversations/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConversationDeleted {
    pub conversation_id: String,
    /// Turns removed (with their traces).
    pub deleted: u64,
}

/// `GET /v1/users/{id}/presence`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PresenceList {
    pub user_id: String,
    pub endpoints: Vec<EndpointInfo>,
}

/// One live connection of a user, on some node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointInfo {
    pub conn_id: String,
    pub device_id: String,
    pub surface: Surface,
    pub transport: Transport,
    pub node_id: String,
    /// RFC 3339.
    pub connected_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Web,
    Ios,
    Android,
    Desktop,
    Teams,
    Outlook,
    #[default]
    Other,
}

impl Surface {
    pub const ALL: [Surface; 7] = [
        Surface::Web,
        Surface::Ios,
        Surface::Android,
        Surface::Desktop,
        Surface::Teams,
        Surface::Outlook,
        Surface::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Web => "web",
            Surface::Ios => "ios",
            Surface::Android => "android",
            Surface::Desktop => "desktop",
            Surface::Teams => "teams",
            Surface::Outlook => "outlook",
            Surface::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Ws,
    Sse,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// Whether `id` is a valid `device_id`: 1–128 characters of `[A-Za-z0-9._:-]`.
/// Whether a name a peer chose (user id, conversation id, category, trace kind…) is 1–`max`
/// bytes with no control character: one rule, so logs, keys and stored rows never see one.
pub fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len()) && !name.chars().any(char::is_control)
}

pub fn valid_device_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_items_match_the_protocol_shapes() {
        let d: EventItem = serde_json::from_str(r#"{"delta":"hi"}"#).unwrap();
        assert_eq!(d, EventItem::Delta("hi".into()));
        let e: EventItem =
            serde_json::from_str(r#"{"end":{"status":"failed","error":"x"}}"#).unwrap();
        assert_eq!(
            e,
            EventItem::End(EndItem { status: TurnStatus::Failed, error: Some("x".into()) })
        );
        assert!(serde_json::from_str::<EventItem>(r#"{"delta":"a","end":{}}"#).is_err());
    }

    #[test]
    fn device_ids() {
        assert!(valid_device_id("phone-1:a.b_c"));
        assert!(!valid_device_id(""));
        assert!(!valid_device_id("a b"));
        assert!(!valid_device_id(&"x".repeat(129)));
    }
}
