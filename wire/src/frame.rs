//! WebSocket frames that are not log events: client requests and the server's control replies.
//! Control frames carry no `seq` and are never replayed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::EndpointInfo;
use crate::event::{LogEvent, TurnStatus};

/// A frame a client sends. `ref`, when present, is echoed in the reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum ClientFrame {
    #[serde(rename = "ping")]
    Ping,
    #[serde(rename = "turn.sync")]
    TurnSync { turn_id: String },
    #[serde(rename = "turn.cancel")]
    TurnCancel { turn_id: String },
    #[serde(rename = "notification.read")]
    NotificationRead { id: String },
    /// v1.1: marks notifications of the inbox (`ids`, or `all: true`).
    #[serde(rename = "notification.mark")]
    NotificationMark {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ids: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        all: Option<bool>,
        status: crate::api::MarkStatus,
    },
    /// v1.1: the task as it is now (`task.snapshot`).
    #[serde(rename = "task.get")]
    TaskGet { task_id: String },
    /// v1.1: cancels one of the user's tasks.
    #[serde(rename = "task.cancel")]
    TaskCancel { task_id: String },
    #[serde(rename = "presence.get")]
    PresenceGet,
    #[serde(rename = "auth.refresh")]
    AuthRefresh { access_token: String },
}

impl ClientFrame {
    /// The frame as JSON text with an optional `ref`.
    pub fn to_json(&self, reference: Option<Value>) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let (Some(r), Value::Object(map)) = (reference, &mut v) {
            map.insert("ref".into(), r);
        }
        v.to_string()
    }

    /// Every client frame type, for error messages.
    pub const TYPES: &'static [&'static str] = &[
        "ping",
        "turn.sync",
        "turn.cancel",
        "notification.read",
        "notification.mark",
        "task.get",
        "task.cancel",
        "presence.get",
        "auth.refresh",
    ];
}

/// A control frame the server sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type")]
pub enum ControlFrame {
    #[serde(rename = "hello")]
    Hello {
        conn_id: String,
        user_id: String,
        device_id: String,
        node_id: String,
        epoch: String,
        /// The newest seq in the log at connect time.
        seq: u64,
        resumed: bool,
        heartbeat_ms: u64,
    },
    #[serde(rename = "pong")]
    Pong {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    #[serde(rename = "presence")]
    Presence {
        endpoints: Vec<EndpointInfo>,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    #[serde(rename = "turn.snapshot")]
    TurnSnapshot {
        turn_id: String,
        conversation_id: String,
        status: TurnStatus,
        text: String,
        next_index: u64,
        as_of_seq: u64,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// v1.1: the reply to `notification.mark`.
    #[serde(rename = "notification.marked")]
    NotificationMarked {
        updated: u64,
        unread_count: u64,
        unseen_count: u64,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    /// v1.1: the reply to `task.get`: the task with its artifacts, as of `as_of_seq`.
    #[serde(rename = "task.snapshot")]
    TaskSnapshot {
        task: Box<crate::task::Task>,
        as_of_seq: u64,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    #[serde(rename = "error")]
    Error {
        code: String,
        message: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    #[serde(rename = "auth.refreshed")]
    AuthRefreshed {
        /// As the token has it: a whole number of seconds is written without a fraction, so a
        /// client that reads it as an integer can.
        #[serde(serialize_with = "crate::claims::numeric_date")]
        exp: f64,
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<Value>,
    },
    #[serde(rename = "reconnect")]
    Reconnect { after_ms: u64 },
}

impl ControlFrame {
    pub fn error(code: &str, message: impl Into<String>, reference: Option<Value>) -> Self {
        ControlFrame::Error { code: code.to_owned(), message: message.into(), reference }
    }

    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Anything a client receives over WebSocket: a log event or a control frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ServerFrame {
    Event(LogEvent),
    Control(ControlFrame),
}

impl ServerFrame {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;

    #[test]
    fn client_frames_parse_with_ref() {
        let f: ClientFrame =
            serde_json::from_str(r#"{"type":"turn.sync","turn_id":"t","ref":1}"#).unwrap();
        assert_eq!(f, ClientFrame::TurnSync { turn_id: "t".into() });
        let text = ClientFrame::Ping.to_json(Some(Value::from("r1")));
        assert_eq!(text, r#"{"ref":"r1","type":"ping"}"#);
    }

    #[test]
    fn a_whole_expiry_is_written_as_an_integer() {
        let f = ControlFrame::AuthRefreshed { exp: 1_796_091_182.0, reference: None };
        assert_eq!(f.to_json(), r#"{"type":"auth.refreshed","exp":1796091182}"#);
        let f = ControlFrame::AuthRefreshed { exp: 1.5, reference: None };
        assert_eq!(f.to_json(), r#"{"type":"auth.refreshed","exp":1.5}"#);
    }

    #[test]
    fn server_frames_tell_events_from_control() {
        let e = ServerFrame::parse(r#"{"seq":1,"type":"notification.read","id":"n"}"#).unwrap();
        assert_eq!(
            e,
            ServerFrame::Event(LogEvent {
                seq: 1,
                body: EventBody::NotificationRead { id: "n".into() }
            })
        );
        let c = ServerFrame::parse(r#"{"type":"pong","ref":3}"#).unwrap();
        assert_eq!(c, ServerFrame::Control(ControlFrame::Pong { reference: Some(Value::from(3)) }));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Any text a client sends is a frame or an error, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,300}") {
            let _ = serde_json::from_str::<ClientFrame>(&text);
            let _ = ServerFrame::parse(&text);
        }

        #[test]
        fn frames_of_every_type_with_odd_fields_parse_or_are_refused(
            kind in proptest::sample::select(ClientFrame::TYPES),
            field in "[a-z_]{1,12}",
            value in ".{0,40}",
        ) {
            let text = serde_json::json!({"type": kind, field: value, "ref": 1}).to_string();
            let _ = serde_json::from_str::<ClientFrame>(&text);
        }
    }
}
