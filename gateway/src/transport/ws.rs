//! `GET /v1/ws`: one task per WebSocket that owns the socket and selects over the client's
//! frames, its bounded queue from the hub, the heartbeat, token expiry and close requests (slow
//! consumer, drain), so that a close frame with the right code is always attempted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout};
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};
use wire::{ControlFrame, close};

use super::client::{self, Action, BadFrames};
use super::feed::Feed;
use super::params;
use super::session::Session;
use super::upgrade::{NotAnUpgrade, Upgrade, Ws};
use super::wire::Wire;
use super::ws_start::{self, Start};
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::hub::{Entry, Outbox, Ready};
use crate::state::AppState;

/// How long a goodbye (close frame, then the peer's close) may take. A slow consumer must first
/// read what is already buffered for it before it sees the 4008, so this is not tiny.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<Upgrade, NotAnUpgrade>,
    auth: Result<Authenticated, ApiError>,
) -> Response {
    // A missing or bad token is a 401 whatever else is wrong with the request (PROTOCOL.md).
    let principal = match auth {
        Ok(Authenticated(p)) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if state.is_draining() {
        return ApiError::draining().into_response();
    }
    let params = match params::parse(query.as_deref(), None) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let limits = &state.limits;
    let config = WebSocketConfig::default()
        .read_buffer_size(limits.ws_read_buffer_bytes)
        .write_buffer_size(limits.ws_write_buffer_bytes)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes));
    let tracker = state.connections.clone();
    let origin = headers.get(ORIGIN).map(|o| o.to_str().unwrap_or("\u{0}"));
    if !state.origins.allows(origin) {
        // PROTOCOL.md: an Origin refused is a 1008 close, which a browser app can see.
        let message =
            format!("origin {:?} is not allowed (GATEWAY_ALLOWED_ORIGINS)", origin.unwrap_or(""));
        return upgrade.on_upgrade(config, &tracker, move |mut socket, _| async move {
            let frame = ControlFrame::error("origin_not_allowed", message, None);
            let _ = timeout(CLOSE_TIMEOUT, socket.send(text(frame.to_json()))).await;
            goodbye(&mut socket, close::POLICY, "origin not allowed").await;
        });
    }
    let reservation = match state.hub.reserve(&principal.user_id) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_endpoints",
                e.to_string(),
            )
            .into_response();
        }
    };
    let start = Box::new(Start { state, principal, params, reservation });
    upgrade.on_upgrade(config, &tracker, move |socket, wire| run(socket, wire, start))
}

pub(super) fn text(s: String) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

/// How a connection ended, and so how to say goodbye.
pub(super) enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Send `reconnect`, then close 1012.
    Drain,
    /// The peer sent a close: answer it (tungstenite queued the reply; it needs a flush).
    PeerClosed,
    /// The peer vanished: nothing more to send.
    Gone,
}

/// The task of one WebSocket for its whole life.
///
/// Everything it holds while idle is memory per endpoint, so: its arguments are boxed (an
/// `async fn` keeps its arguments beside the locals made from them for its whole life: rustc
/// does not overlap the two, and a 288-byte socket would sit there twice), the socket too
/// (one pointer in the task), and every phase but the steady one is boxed.
async fn run(mut socket: Box<Ws>, wire: Arc<Wire>, start: Box<Start>) {
    let Some((mut session, mut feed, ended)) =
        Box::pin(ws_start::open(&mut socket, &wire, start)).await
    else {
        return;
    };
    let end = match ended {
        Some(end) => end,
        None => serve(&mut socket, &wire, &mut session, &mut feed).await,
    };
    // Nothing may be written directly past this: the goodbye ends the stream.
    feed.outbox.unset_direct();
    Box::pin(say_goodbye(&mut socket, &session, end)).await;
    drop(session);
}

pub(super) async fn say_goodbye(socket: &mut Ws, session: &Session, end: End) {
    match end {
        End::Close(code, reason) => goodbye(socket, code, reason).await,
        End::Drain => {
            let after_ms = session.state.limits.reconnect_after_ms;
            let frame = ControlFrame::Reconnect { after_ms };
            let _ = timeout(CLOSE_TIMEOUT, socket.send(text(frame.to_json()))).await;
            goodbye(socket, close::DRAINING, "server draining").await;
        }
        End::PeerClosed => {
            let _ = timeout(CLOSE_TIMEOUT, socket.flush()).await;
        }
        End::Gone => {}
    }
}

/// Sends a close frame and waits briefly for the peer's, so nothing it still has to read is
/// cut off by a reset.
pub(super) async fn goodbye(socket: &mut Ws, code: u16, reason: &'static str) {
    let reason = Utf8Bytes::from_static(reason);
    let frame = Message::Close(Some(CloseFrame { code: code.into(), reason }));
    let _ = timeout(CLOSE_TIMEOUT, async {
        if socket.send(frame).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = socket.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

pub(super) fn close_code(code: u16) -> End {
    match code {
        close::SLOW_CONSUMER => End::Close(code, "slow consumer"),
        close::DRAINING => End::Drain,
        close::TOKEN_EXPIRED => End::Close(code, "token expired"),
        _ => End::Close(code, "closed by server"),
    }
}

/// Checks what the outbox gave against the client's stream (repairing it, or reading on from
/// the log when the endpoint is behind) and writes it.
/// Boxed by the caller.
async fn deliver(wire: &Wire, feed: &mut Feed, session: &Session, ready: Ready) -> Result<(), End> {
    let batch = match ready {
        // The steady state: the queue continues the client's stream exactly.
        Ready::Events(batch) if feed.accept(&batch) => batch,
        slow => {
            let backplane = &*session.state.backplane;
            feed.admit(slow, backplane, &session.user).await.map_err(|(c, r)| {
                if c == close::SLOW_CONSUMER {
                    session.state.metrics.slow_consumer_closes.increment(1);
                }
                close_code_with(c, r)
            })?
        }
    };
    write_batch(wire, &feed.outbox, batch, session).await
}

/// How a close the feed asked for ends the connection.
fn close_code_with(code: u16, reason: &'static str) -> End {
    match code {
        close::DRAINING => End::Drain,
        _ => End::Close(code, reason),
    }
}

/// Writes a batch of events (after what the direct path left pending), unless a close request
/// comes first.
async fn write_batch(
    wire: &Wire,
    outbox: &Outbox,
    batch: VecDeque<Arc<Entry>>,
    session: &Session,
) -> Result<(), End> {
    tokio::select! {
        biased;
        code = outbox.closed() => return Err(close_code(code)),
        r = wire.send(&batch) => r.map_err(|_| End::Gone)?,
    }
    let events = batch.iter().map(|e| (&e.at, e.json.len()));
    session.state.metrics.delivered(wire::Transport::Ws, &session.tenant, events);
    Ok(())
}

/// What the loop does after a client frame was answered.
enum Answer {
    Done,
    /// The token was refreshed: re-arm the expiry.
    Refreshed,
    End(End),
}

/// Handles one client frame and sends its reply. The caller boxes it: client frames are rare,
/// and this state would otherwise sit in every idle connection's task.
async fn answer(
    socket: &mut Ws,
    session: &mut Session,
    frames: &mut BadFrames,
    outbox: &Outbox,
    msg: Message,
) -> Answer {
    let action = match msg {
        Message::Text(t) => client::text(session, frames, outbox, t.as_str()).await,
        _ => client::binary(session, frames),
    };
    let (reply, close_after, refreshed) = match action {
        Action::Nothing => return Answer::Done,
        Action::Reply(f) => (f, None, false),
        Action::ReplyAndClose(f, code) => (f, Some(code), false),
        Action::Refreshed(f) => (f, None, true),
    };
    tokio::select! {
        biased;
        code = outbox.closed() => return Answer::End(close_code(code)),
        r = socket.send(text(reply.to_json())) => if r.is_err() { return Answer::End(End::Gone) },
    }
    match (close_after, refreshed) {
        (Some(code), _) => Answer::End(End::Close(code, "too many bad frames")),
        (None, true) => Answer::Refreshed,
        (None, false) => Answer::Done,
    }
}

/// How a read error ends the connection: the close code RFC 6455 §7.4.1 gives it (a frame
/// over the size limit 1009, text that is not UTF-8 1007, a framing error 1002), or gone.
fn read_error(e: tungstenite::Error) -> End {
    match e {
        tungstenite::Error::Capacity(_) => End::Close(close::TOO_LARGE, "frame too large"),
        tungstenite::Error::Utf8(_) => End::Close(close::INVALID_PAYLOAD, "invalid UTF-8"),
        tungstenite::Error::Protocol(p) => {
            tracing::debug!(error = %p, "WebSocket protocol error");
            End::Close(close::PROTOCOL_ERROR, "protocol error")
        }
        _ => End::Gone,
    }
}

/// The steady state: live events, client frames, heartbeat and token expiry, until the end.
async fn serve(socket: &mut Ws, wire: &Wire, session: &mut Session, feed: &mut Feed) -> End {
    let state = session.state.clone();
    // One timer serves the heartbeat and the token expiry (one fewer timer per connection).
    let hb = state.limits.heartbeat;
    let mut next_beat = Instant::now() + hb;
    let mut expires = session.expiry();
    let timer = sleep_until(next_beat.min(expires));
    tokio::pin!(timer);
    let mut last_seen = Instant::now();
    let mut frames = BadFrames::default();
    loop {
        // Caught up and idle: the publisher may write the next events itself.
        feed.arm();
        // One waiter on the outbox here: `ready` reports close requests too (drain included), and
        // two futures waiting on its `Notify` in one select would let one swallow the other's
        // wake-up.
        tokio::select! {
            biased;
            ready = feed.outbox.ready() => {
                if let Ready::Close(code) = ready {
                    return close_code(code);
                }
                if let Err(end) = Box::pin(deliver(wire, feed, session, ready)).await {
                    return end;
                }
            }
            msg = socket.next() => {
                last_seen = Instant::now();
                let msg = match msg {
                    None => return End::Gone,
                    Some(Ok(Message::Close(_))) => return End::PeerClosed,
                    Some(Err(e)) => return read_error(e),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => m,
                };
                match Box::pin(answer(socket, session, &mut frames, &feed.outbox, msg)).await {
                    Answer::Done => {}
                    Answer::Refreshed => {
                        expires = session.expiry();
                        timer.as_mut().reset(next_beat.min(expires));
                    }
                    Answer::End(end) => return end,
                }
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= expires {
                    return End::Close(close::TOKEN_EXPIRED, "token expired");
                }
                next_beat = now + hb;
                timer.as_mut().reset(next_beat.min(expires));
                // Two and a half beats without a word (pongs included): the peer is gone.
                if last_seen.elapsed() > hb * 5 / 2 {
                    return End::Gone;
                }
                tokio::select! {
                    biased;
                    code = feed.outbox.closed() => return close_code(code),
                    r = socket.send(Message::Ping(Bytes::new())) => if r.is_err() { return End::Gone },
                }
            }
        }
    }
}
