//! Client frames (WebSocket only): parse, act, and say what to send back.
//!
//! A malformed or unknown frame gets an error frame and counts as a bad frame; more than
//! [`BAD_FRAME_LIMIT`] within [`BAD_FRAME_WINDOW`] closes the connection with 1008. A
//! well-formed request that cannot be met (unknown turn, turn already ended) gets an error frame
//! without counting against the client. Frames that publish to the user's log
//! (`notification.read`, `notification.mark`, `turn.cancel`, `task.cancel`) draw on a token
//! bucket per connection (`GATEWAY_CLIENT_PUBLISH_PER_SEC`, burst twice that); past it they get
//! the error `rate_limited` and publish nothing.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;
use wire::ControlFrame;

use super::session::Session;
use crate::domain::TurnError;
use crate::hub::Outbox;

pub const BAD_FRAME_LIMIT: u32 = 10;
pub const BAD_FRAME_WINDOW: Duration = Duration::from_secs(10);

/// What the connection does after a client frame.
#[derive(Debug)]
pub enum Action {
    Nothing,
    Reply(ControlFrame),
    /// Reply, then close with the code (too many bad frames).
    ReplyAndClose(ControlFrame, u16),
    /// The token was refreshed: re-arm the expiry timer, then reply.
    Refreshed(ControlFrame),
}

/// Counts bad frames in a sliding window, and the publishing frames' token bucket.
#[derive(Debug)]
pub struct BadFrames {
    count: u32,
    since: Instant,
    /// Publishing frames the connection may still send now (refilled with time).
    tokens: f32,
    refilled: Instant,
}

impl Default for BadFrames {
    fn default() -> Self {
        let now = Instant::now();
        BadFrames { count: 0, since: now, tokens: f32::MAX, refilled: now }
    }
}

impl BadFrames {
    /// Takes one token of a bucket refilled at `per_sec` and holding twice that; false when
    /// it is empty (the frame is refused).
    fn publish(&mut self, per_sec: u32) -> bool {
        let burst = 2.0 * per_sec as f32;
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f32() * per_sec as f32;
        self.tokens = (self.tokens.min(burst) + refill).min(burst);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Records one; true when the limit is now exceeded.
    fn hit(&mut self) -> bool {
        if self.since.elapsed() > BAD_FRAME_WINDOW {
            self.count = 0;
            self.since = Instant::now();
        }
        self.count += 1;
        self.count > BAD_FRAME_LIMIT
    }
}

fn bad(
    session: &Session,
    bad: &mut BadFrames,
    code: &str,
    message: String,
    reference: Option<Value>,
) -> Action {
    session.state.metrics.bad_frames.increment(1);
    let frame = ControlFrame::error(code, message, reference);
    if bad.hit() { Action::ReplyAndClose(frame, wire::close::POLICY) } else { Action::Reply(frame) }
}

/// A binary frame: the protocol is JSON text.
pub fn binary(session: &Session, frames: &mut BadFrames) -> Action {
    bad(
        session,
        frames,
        "invalid_frame",
        "binary frames are not accepted; send JSON text".into(),
        None,
    )
}

fn string_field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    map.get(name).and_then(Value::as_str).filter(|s| !s.is_empty() && s.len() <= 256)
}

/// Handles one text frame. `outbox` is the connection's own: a frame that both publishes and
/// replies holds its direct writes so the reply goes first.
pub async fn text(
    session: &mut Session,
    frames: &mut BadFrames,
    outbox: &Outbox,
    text: &str,
) -> Action {
    let map = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return bad(
                session,
                frames,
                "invalid_frame",
                "a frame must be a JSON object".into(),
                None,
            );
        }
        Err(e) => {
            return bad(
                session,
                frames,
                "malformed_json",
                format!("the frame is not valid JSON: {e}"),
                None,
            );
        }
    };
    let reference = map.get("ref").cloned();
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        return bad(
            session,
            frames,
            "invalid_frame",
            "the frame has no string \"type\"".into(),
            reference,
        );
    };
    let state = session.state.clone();
    let missing = |field: &str| format!("{kind} needs a string \"{field}\" of 1-256 bytes");
    let per_sec = state.limits.client_publish_per_sec;
    let publishing =
        matches!(kind, "notification.read" | "notification.mark" | "turn.cancel" | "task.cancel");
    if publishing && !frames.publish(per_sec) {
        let message = format!(
            "more than {per_sec} publishing frames a second (burst {}); nothing was published",
            2 * per_sec
        );
        return Action::Reply(ControlFrame::error("rate_limited", message, reference));
    }
    match kind {
        "ping" => Action::Reply(ControlFrame::Pong { reference }),
        "turn.sync" => {
            let Some(turn_id) = string_field(&map, "turn_id") else {
                return bad(session, frames, "invalid_frame", missing("turn_id"), reference);
            };
            match state.turns.snapshot(&session.user, turn_id).await {
                Ok(s) => Action::Reply(ControlFrame::TurnSnapshot {
                    turn_id: s.turn_id,
                    conversation_id: s.conversation_id,
                    status: s.status,
                    text: s.text,
                    next_index: s.next_index,
                    as_of_seq: s.as_of_seq,
                    reference,
                }),
                Err(e) => Action::Reply(turn_error(e, reference)),
            }
        }
        "turn.cancel" => {
            let Some(turn_id) = string_field(&map, "turn_id") else {
                return bad(session, frames, "invalid_frame", missing("turn_id"), reference);
            };
            match state.turns.cancel(&session.user, turn_id).await {
                Ok(_) => Action::Nothing,
                Err(e) => Action::Reply(turn_error(e, reference)),
            }
        }
        "task.get" => {
            let Some(task_id) = string_field(&map, "task_id") else {
                return bad(session, frames, "invalid_frame", missing("task_id"), reference);
            };
            match state.tasks.snapshot(&session.user, task_id).await {
                Ok((task, as_of_seq)) => {
                    let task = Box::new(task);
                    Action::Reply(ControlFrame::TaskSnapshot { task, as_of_seq, reference })
                }
                Err(e) => Action::Reply(task_error(e, reference)),
            }
        }
        "task.cancel" => {
            let Some(task_id) = string_field(&map, "task_id") else {
                return bad(session, frames, "invalid_frame", missing("task_id"), reference);
            };
            match state.tasks.cancel(&session.user, task_id).await {
                Ok(_) => Action::Nothing,
                Err(e) => Action::Reply(task_error(e, reference)),
            }
        }
        "notification.read" => {
            let Some(id) = string_field(&map, "id") else {
                return bad(session, frames, "invalid_frame", missing("id"), reference);
            };
            match state.notes.mark_read(&session.user, id).await {
                Ok(_) => Action::Nothing,
                Err(e) => Action::Reply(ControlFrame::error(e.code, e.message, reference)),
            }
        }
        "notification.mark" => {
            let mut fields = map.clone();
            fields.remove("type");
            fields.remove("ref");
            let parsed = serde_json::from_value::<wire::api::MarkRequest>(Value::Object(fields));
            let mark = match parsed
                .map_err(|e| e.to_string())
                .and_then(|m| crate::domain::inbox::which(m.ids, m.all).map(|ids| (ids, m.status)))
            {
                Ok(m) => m,
                Err(e) => return bad(session, frames, "invalid_frame", e, reference),
            };
            // PROTOCOL.md lists the reply first: the `notification.state` this publishes
            // follows `notification.marked` on this connection (the task writes it after the
            // reply). Other frames keep the direct path: a `turn.snapshot` written after the
            // events it covers spares clients events older than it.
            outbox.hold();
            match state.notes.mark(&session.user, mark.0, mark.1).await {
                Ok(r) => Action::Reply({
                    state.metrics.marks.increment(1);
                    ControlFrame::NotificationMarked {
                        updated: r.updated,
                        unread_count: r.unread_count,
                        unseen_count: r.unseen_count,
                        reference,
                    }
                }),
                Err(e) => Action::Reply(ControlFrame::error(e.code, e.message, reference)),
            }
        }
        "presence.get" => match state.presence.list(&session.user).await {
            Ok(endpoints) => Action::Reply(ControlFrame::Presence { endpoints, reference }),
            Err(e) => {
                tracing::warn!(error = %e, "presence read failed");
                let message = "presence cannot be read now";
                Action::Reply(ControlFrame::error("presence_unavailable", message, reference))
            }
        },
        "auth.refresh" => {
            let Some(token) = map.get("access_token").and_then(Value::as_str) else {
                return bad(
                    session,
                    frames,
                    "invalid_frame",
                    "auth.refresh needs a string \"access_token\"".into(),
                    reference,
                );
            };
            match state.verifier.verify(token) {
                Err(e) => Action::Reply(ControlFrame::error(e.code, e.message, reference)),
                Ok(p) if p.user_id != session.user => Action::Reply(ControlFrame::error(
                    "sub_mismatch",
                    "the new token is for another user",
                    reference,
                )),
                Ok(p) => {
                    session.exp = p.exp;
                    Action::Refreshed(ControlFrame::AuthRefreshed { exp: p.exp, reference })
                }
            }
        }
        other => bad(
            session,
            frames,
            "unknown_type",
            format!(
                "unknown frame type {other:?}; expected one of {}",
                wire::ClientFrame::TYPES.join(", ")
            ),
            reference,
        ),
    }
}

fn turn_error(e: TurnError, reference: Option<Value>) -> ControlFrame {
    let code = match &e {
        TurnError::NotFound(_) => "turn_not_found",
        TurnError::Ended { .. } => "turn_ended",
        TurnError::Conflict(_) => "turn_conflict",
        TurnError::Invalid(_) => "invalid_frame",
        TurnError::Unavailable(u) => u.code,
    };
    ControlFrame::error(code, e.to_string(), reference)
}

/// A task's refusal as the error frame, with the code the HTTP API gives it.
fn task_error(e: crate::domain::TaskError, reference: Option<Value>) -> ControlFrame {
    let e = crate::error::ApiError::from(e);
    ControlFrame::error(e.code, e.message, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn publishing_frames_are_held_to_the_rate_with_a_burst_of_twice_it() {
        let mut f = BadFrames::default();
        let taken = (0..100).filter(|_| f.publish(10)).count();
        assert_eq!(taken, 20, "a burst of twice the rate");
        tokio::time::advance(Duration::from_millis(500)).await;
        let taken = (0..100).filter(|_| f.publish(10)).count();
        assert_eq!(taken, 5, "refilled at the rate");
    }
}
