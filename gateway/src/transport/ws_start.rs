//! A WebSocket's first moments: attach to the user's log, say `hello`, send what the client
//! missed, and hand the socket to the publishers' direct path. Boxed by the caller and gone
//! once done, so none of it sits in an idle connection's task.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use futures_util::SinkExt;
use tokio::time::timeout;
use wire::{ControlFrame, Transport, close};

use super::feed::Feed;
use super::params::ConnectParams;
use super::session::Session;
use super::upgrade::Ws;
use super::wire::Wire;
use super::ws::{CLOSE_TIMEOUT, End, close_code, goodbye, text};
use crate::auth::Principal;
use crate::backplane::Unavailable;
use crate::hub::{Attachment, Reservation};
use crate::state::AppState;

/// What a connection starts with once its upgrade was accepted.
pub struct Start {
    pub state: AppState,
    pub principal: Principal,
    pub params: ConnectParams,
    pub reservation: Reservation,
}

/// Attaches the endpoint and begins its stream. `None` when there is no log to say hello with
/// (Redis unreachable): the client was told why and to come back, maybe on another node. Else
/// the session and its feed, and how the connection already ended if it did.
pub async fn open(
    socket: &mut Ws,
    wire: &Arc<Wire>,
    start: Box<Start>,
) -> Option<(Session, Feed, Option<End>)> {
    let Start { state, principal, params, reservation } = *start;
    let after_ms = state.limits.reconnect_after_ms;
    match Session::open(state, &principal, &params, Transport::Ws, reservation).await {
        Ok((session, att)) => {
            let (feed, ended) = begin(socket, wire, &session, att).await;
            Some((session, feed, ended))
        }
        Err(e) => {
            unavailable(socket, after_ms, e).await;
            None
        }
    }
}

/// `hello`, then what the client missed; then live events may go straight to the socket.
async fn begin(
    socket: &mut Ws,
    wire: &Arc<Wire>,
    session: &Session,
    att: Attachment,
) -> (Feed, Option<End>) {
    let state = &session.state;
    let hello = session.hello(&att);
    let feed = Feed::new(&att);
    let replay = VecDeque::from(att.replay);
    let initial = async {
        socket.send(text(hello.to_json())).await.map_err(io::Error::other)?;
        wire.send(&replay).await
    };
    tokio::select! {
        biased;
        code = feed.outbox.closed() => return (feed, Some(close_code(code))),
        _ = state.shutdown.cancelled() => return (feed, Some(End::Drain)),
        r = initial => if r.is_err() { return (feed, Some(End::Gone)) },
    }
    state.metrics.events_delivered.increment(replay.len() as u64);
    wire.count_as(state.metrics.clone(), session.tenant.clone());
    feed.outbox.set_direct(wire.clone(), feed.epoch());
    let ended = state.is_draining().then_some(End::Drain);
    (feed, ended)
}

async fn unavailable(socket: &mut Ws, after_ms: u64, e: Unavailable) {
    tracing::warn!(error = %e, "cannot attach a WebSocket");
    let frame = ControlFrame::error(e.code, e.message, None);
    let _ = timeout(CLOSE_TIMEOUT, socket.send(text(frame.to_json()))).await;
    let frame = ControlFrame::Reconnect { after_ms };
    let _ = timeout(CLOSE_TIMEOUT, socket.send(text(frame.to_json()))).await;
    goodbye(socket, close::DRAINING, "backplane unavailable").await;
}
