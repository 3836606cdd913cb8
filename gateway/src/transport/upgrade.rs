//! The WebSocket handshake (RFC 6455 §4.2), done here rather than by axum's `WebSocketUpgrade`
//! so that the upgraded connection comes back as our own [`Socket`]: its TCP stream is what
//! the direct path writes to ([`super::wire`]).

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::wire::{Conn, Wire};
use crate::accept::Socket;
use crate::error::ApiError;

/// The socket of an upgraded WebSocket, for tungstenite.
pub type Ws = WebSocketStream<Conn>;

/// A valid upgrade request, not answered yet.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// The request is not a WebSocket upgrade; names what is missing.
#[derive(Debug)]
pub struct NotAnUpgrade(pub &'static str);

impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        let message = format!("GET /v1/ws is a WebSocket upgrade ({})", self.0);
        ApiError::new(StatusCode::UPGRADE_REQUIRED, "upgrade_required", message).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotAnUpgrade> {
        let h = &parts.headers;
        if parts.method != Method::GET {
            return Err(NotAnUpgrade("method must be GET"));
        }
        if !has_token(h, header::CONNECTION, "upgrade") {
            return Err(NotAnUpgrade("Connection: upgrade missing"));
        }
        if !has_token(h, header::UPGRADE, "websocket") {
            return Err(NotAnUpgrade("Upgrade: websocket missing"));
        }
        if !has_token(h, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(NotAnUpgrade("Sec-WebSocket-Version must be 13"));
        }
        let key = h
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(NotAnUpgrade("Sec-WebSocket-Key missing"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotAnUpgrade("the connection cannot be upgraded"))?;
        Ok(Upgrade { key, on_upgrade })
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl Upgrade {
    /// Answers 101 and, once hyper hands the connection over, runs `f` on it in a task of
    /// `tracker` (a drain waits for it). The socket comes boxed: the task holds a pointer.
    pub fn on_upgrade<F, Fut>(
        self,
        config: WebSocketConfig,
        tracker: &TaskTracker,
        f: F,
    ) -> Response
    where
        F: FnOnce(Box<Ws>, Arc<Wire>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // One pointer in the task for all the handover needs: what a task captures stays in
        // it for the connection's life.
        let handover = Box::new((self.on_upgrade, config));
        tracker.spawn(async move {
            let Some((ws, wire)) = Box::pin(take_over(handover)).await else { return };
            f(ws, wire).await
        });
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }
}

/// The upgraded connection as our socket, shared with the direct path, and tungstenite over it.
async fn take_over(handover: Box<(OnUpgrade, WebSocketConfig)>) -> Option<(Box<Ws>, Arc<Wire>)> {
    let (on_upgrade, config) = *handover;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            return None;
        }
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<Socket>>() else {
        tracing::error!("a WebSocket upgraded on a connection `accept` did not make");
        return None;
    };
    let wire = Wire::new(parts.io.into_inner());
    let conn = Conn::new(wire.clone());
    let read = parts.read_buf.to_vec();
    let ws = WebSocketStream::from_partially_read(conn, read, Role::Server, Some(config)).await;
    Some((Box::new(ws), wire))
}
