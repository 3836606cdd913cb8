//! `GET /v1/sse`: a `text/event-stream` response whose body is the endpoint. Hyper's connection
//! task owns the socket and pulls from this stream only as fast as the client reads, so the
//! stream is where the endpoint's queue, heartbeat, expiry and drain meet. SSE has no close
//! codes: where WebSocket would close, the stream ends (after `event: reconnect` on a drain).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep, interval_at, sleep_until};
use wire::{ControlFrame, Transport};

use super::feed::Feed;
use super::params;
use super::session::Session;
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::hub::{Attachment, Entry, Ready};

pub async fn handler(
    State(state): State<crate::state::AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    auth: Result<Authenticated, ApiError>,
) -> Result<Response, ApiError> {
    // A missing or bad token is a 401 first, as on `/v1/ws`.
    let Authenticated(principal) = auth?;
    if state.is_draining() {
        return Err(ApiError::draining());
    }
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or(""));
    let params = params::parse(query.as_deref(), last_event_id)?;
    let origin = headers.get(ORIGIN).map(|o| o.to_str().unwrap_or("\u{0}"));
    if !state.origins.allows(origin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("origin {:?} is not allowed (GATEWAY_ALLOWED_ORIGINS)", origin.unwrap_or("")),
        ));
    }
    let reservation = state.hub.reserve(&principal.user_id).map_err(|e| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_endpoints", e.to_string())
    })?;
    let (session, att) =
        Session::open(state.clone(), &principal, &params, Transport::Sse, reservation).await?;
    let stream = SseStream::new(session, att);
    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        s.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), s))
    }));
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The state of one SSE endpoint between body chunks.
struct SseStream {
    session: Session,
    /// hello and the resume replay, sent first.
    initial: Option<(Bytes, std::vec::IntoIter<Arc<Entry>>)>,
    feed: Feed,
    heartbeat: Interval,
    expiry: Pin<Box<Sleep>>,
    done: bool,
}

impl SseStream {
    fn new(session: Session, att: Attachment) -> Self {
        let hello = format!("event: hello\ndata: {}\n\n", session.hello(&att).to_json());
        let hb = session.state.limits.heartbeat;
        let mut heartbeat = interval_at(Instant::now() + hb, hb);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let expiry = Box::pin(sleep_until(session.expiry()));
        SseStream {
            feed: Feed::new(&att),
            initial: Some((Bytes::from(hello), att.replay.into_iter())),
            heartbeat,
            expiry,
            session,
            done: false,
        }
    }

    /// The last chunk of a drained stream.
    fn reconnect(&mut self) -> Bytes {
        self.done = true;
        let after = self.session.state.limits.reconnect_after_ms;
        let frame = ControlFrame::Reconnect { after_ms: after };
        Bytes::from(format!("event: reconnect\ndata: {}\nretry: {after}\n\n", frame.to_json()))
    }

    /// The next piece of the body; `None` ends the stream.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let metrics = self.session.state.metrics.clone();
        if let Some((hello, replay)) = self.initial.take() {
            let mut buf = BytesMut::from(&hello[..]);
            let n = replay.len() as u64;
            for e in replay {
                buf.put_slice(e.sse_frame());
            }
            metrics.events_delivered.increment(n);
            return Some(buf.freeze());
        }
        if self.session.state.is_draining() {
            return Some(self.reconnect());
        }
        tokio::select! {
            biased;
            _ = &mut self.expiry => None,
            ready = self.feed.outbox.ready() => {
                // SSE has no close codes: a close request ends the stream, after `reconnect`
                // when the node drains.
                let batch = match ready {
                    Ready::Events(batch) if self.feed.accept(&batch) => batch,
                    Ready::Close(wire::close::DRAINING) => return Some(self.reconnect()),
                    Ready::Close(_) => return None,
                    // Repaired, or read on from the log (behind): the slow path, boxed.
                    slow => {
                        let (state, user) = (&self.session.state, &self.session.user);
                        match Box::pin(self.feed.admit(slow, &*state.backplane, user)).await {
                            Ok(batch) => batch,
                            Err(_) => {
                                state.metrics.slow_consumer_closes.increment(1);
                                return None;
                            }
                        }
                    }
                };
                let mut buf = BytesMut::new();
                for ev in &batch {
                    buf.put_slice(ev.sse_frame());
                }
                // Handed to hyper, which writes as the client reads: the latency to the body.
                let events = batch.iter().map(|e| (&e.at, e.json.len()));
                metrics.delivered(Transport::Sse, &self.session.tenant, events);
                Some(buf.freeze())
            }
            _ = self.heartbeat.tick() => Some(Bytes::from_static(wire::sse::PING.as_bytes())),
        }
    }
}
