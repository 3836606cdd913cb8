//! `SubscribeToTask` (and `SendStreamingMessage` once the task exists): an SSE stream of
//! JSON-RPC responses read from the user's log, like any endpoint's, filtered to one task or
//! turn. Every frame has `id: <epoch>:<seq>`, so `Last-Event-ID` resumes with exactly the
//! updates after it, from the log (plain A2A promises no such thing): the first frame of a fresh
//! subscription is the task as of a seq, and only later events of it follow.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep, interval_at, sleep_until};

use super::model;
use super::rpc::RpcError;
use crate::auth::Principal;
use crate::hub::{Entry, Ready, ResumeFrom};
use crate::state::AppState;
use crate::transport::feed::Feed;

/// What is followed, as it is now.
struct Followed {
    context_id: String,
    terminal: bool,
    /// The A2A Task, and the seq it is as of.
    task: Value,
    as_of: u64,
}

async fn followed(state: &AppState, user: &str, id: &str) -> Result<Followed, RpcError> {
    match state.tasks.snapshot(user, id).await {
        Ok((t, as_of)) => {
            let task = model::task(&t, true);
            return Ok(Followed {
                context_id: t.context_id,
                terminal: t.state.is_terminal(),
                task,
                as_of,
            });
        }
        Err(crate::domain::TaskError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match state.turns.snapshot(user, id).await {
        Ok(s) => Ok(Followed {
            context_id: s.conversation_id.clone(),
            terminal: s.status != wire::TurnStatus::Streaming,
            task: model::turn_task(&s, &crate::ids::now_rfc3339()),
            as_of: s.as_of_seq,
        }),
        Err(_) => Err(RpcError::not_found(id)),
    }
}

/// Answers a subscription: the stream, or an error (plain JSON-RPC) before it starts.
pub async fn start(
    state: &AppState,
    p: &Principal,
    rid: Value,
    id: &str,
    last_event_id: Option<&str>,
) -> Result<Response, RpcError> {
    let now = followed(state, &p.user_id, id).await?;
    let resume = last_event_id.and_then(wire::sse::parse_event_id);
    if resume.is_none() && now.terminal {
        return Err(RpcError::new(
            -32004,
            format!("task {id:?} is in a terminal state; nothing follows"),
        ));
    }
    stream(state, p, rid, id, resume, now.context_id).await
}

/// The stream of a task the caller just had made (`SendStreamingMessage`): from its first
/// frame, even if it ended already (then that frame is the last).
pub async fn start_any(
    state: &AppState,
    p: &Principal,
    rid: Value,
    id: &str,
) -> Result<Response, RpcError> {
    let now = followed(state, &p.user_id, id).await?;
    stream(state, p, rid, id, None, now.context_id).await
}

async fn stream(
    state: &AppState,
    p: &Principal,
    rid: Value,
    id: &str,
    resume: Option<(&str, u64)>,
    context_id: String,
) -> Result<Response, RpcError> {
    let user = p.user_id.to_string();
    if state.is_draining() {
        return Err(RpcError::new(-32603, "the server is draining; subscribe again"));
    }
    let reservation =
        state.hub.reserve(&user).map_err(|e| RpcError::new(-32603, format!("{e}")))?;
    let resume = resume.map(|(epoch, after)| ResumeFrom { epoch: epoch.to_owned(), after });
    let att = state
        .backplane
        .attach(reservation, resume.as_ref())
        .await
        .map_err(|e| RpcError::new(-32603, e.message))?;
    let mut s = A2aStream {
        state: state.clone(),
        user: user.clone(),
        id: id.to_owned(),
        context_id,
        rid,
        epoch: att.epoch.clone(),
        hub_id: att.id,
        feed: Feed::new(&att),
        skip_upto: 0,
        pending: VecDeque::new(),
        done: false,
        heartbeat: heartbeat(state),
        expiry: Box::pin(sleep_until(crate::transport::session::expiry_at(p.exp))),
    };
    if att.resumed {
        s.take(&att.replay);
    } else {
        // Fresh, or the log no longer holds the resume point: the task as of a seq, then only
        // what follows it (read after attaching, so nothing falls between).
        let f = followed(state, &user, id).await?;
        s.skip_upto = f.as_of;
        s.frame(f.as_of, json!({"task": f.task}), f.terminal);
        s.take(&att.replay);
    }
    let body = Body::from_stream(futures_util::stream::unfold(s, |mut s| async move {
        s.next_chunk().await.map(|c| (Ok::<_, std::convert::Infallible>(c), s))
    }));
    let mut r = body.into_response();
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

fn heartbeat(state: &AppState) -> Interval {
    let hb = state.limits.heartbeat;
    let mut i = interval_at(Instant::now() + hb, hb);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

struct A2aStream {
    state: AppState,
    user: String,
    id: String,
    context_id: String,
    rid: Value,
    epoch: Arc<str>,
    hub_id: u64,
    feed: Feed,
    /// Events at or below this seq are in the first frame already.
    skip_upto: u64,
    pending: VecDeque<Bytes>,
    /// The terminal update is queued: the stream ends after it.
    done: bool,
    heartbeat: Interval,
    expiry: Pin<Box<Sleep>>,
}

impl Drop for A2aStream {
    fn drop(&mut self) {
        self.state.backplane.detach(&self.user, self.hub_id);
    }
}

impl A2aStream {
    fn frame(&mut self, seq: u64, result: Value, last: bool) {
        let body = json!({"jsonrpc": "2.0", "id": self.rid, "result": result});
        self.pending.push_back(Bytes::from(format!("id: {}:{seq}\ndata: {body}\n\n", self.epoch)));
        self.done |= last;
    }

    /// Queues the updates among `entries` about the followed task, up to its terminal one.
    fn take(&mut self, entries: &[Arc<Entry>]) {
        for e in entries {
            if self.done {
                return;
            }
            if e.seq <= self.skip_upto
                || !(e.kind.starts_with("task.") || e.kind.starts_with("turn."))
            {
                continue;
            }
            let Ok(ev) = serde_json::from_str::<wire::LogEvent>(e.json.as_str()) else { continue };
            if let Some((v, last)) = model::update(&ev.body, &self.id, &self.context_id) {
                self.frame(e.seq, v, last);
            }
        }
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.done || self.state.is_draining() {
                return None;
            }
            tokio::select! {
                biased;
                _ = &mut self.expiry => return None,
                ready = self.feed.outbox.ready() => {
                    let batch = match ready {
                        Ready::Close(_) => return None,
                        other => {
                            let (state, user) = (self.state.clone(), self.user.clone());
                            match Box::pin(self.feed.admit(other, &*state.backplane, &user)).await {
                                Ok(b) => b,
                                Err(_) => return None,
                            }
                        }
                    };
                    let batch: Vec<Arc<Entry>> = batch.into_iter().collect();
                    self.take(&batch);
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(wire::sse::PING.as_bytes())),
            }
        }
    }
}
