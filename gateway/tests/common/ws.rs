//! A WebSocket client speaking the protocol through the `wire` types.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wire::{ControlFrame, LogEvent, ServerFrame};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What `next` saw.
#[derive(Debug)]
pub enum Received {
    Frame(ServerFrame),
    Closed(Option<u16>),
}

impl WsClient {
    /// Connects with the token in the query (as browsers do) and optional extra headers.
    pub async fn connect(
        addr: &str,
        token: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, Error> {
        let sep = if query.is_empty() { "" } else { "&" };
        let url = format!("ws://{addr}/v1/ws?access_token={token}{sep}{query}");
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, HeaderValue::from_str(v).unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(WsClient { ws })
    }

    /// The next frame or the close, skipping pings.
    pub async fn next(&mut self) -> Received {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Received::Frame(
                        ServerFrame::parse(t.as_str())
                            .unwrap_or_else(|e| panic!("bad frame {t}: {e}")),
                    );
                }
                Some(Ok(Message::Close(f))) => {
                    return Received::Closed(f.map(|f: CloseFrame| f.code.into()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    pub async fn frame(&mut self) -> ServerFrame {
        match self.next().await {
            Received::Frame(f) => f,
            Received::Closed(c) => panic!("closed ({c:?}) while waiting for a frame"),
        }
    }

    pub async fn event(&mut self) -> LogEvent {
        match self.frame().await {
            ServerFrame::Event(e) => e,
            other => panic!("expected a log event, got {other:?}"),
        }
    }

    pub async fn control(&mut self) -> ControlFrame {
        match self.frame().await {
            ServerFrame::Control(c) => c,
            other => panic!("expected a control frame, got {other:?}"),
        }
    }

    /// The hello: (epoch, seq, resumed).
    pub async fn hello(&mut self) -> (String, u64, bool) {
        match self.control().await {
            ControlFrame::Hello { epoch, seq, resumed, .. } => (epoch, seq, resumed),
            other => panic!("expected hello, got {other:?}"),
        }
    }

    /// Events until (and including) the `turn.end` of `turn_id`.
    pub async fn until_end(&mut self, turn_id: &str) -> Vec<LogEvent> {
        let mut out = Vec::new();
        loop {
            let e = self.event().await;
            let done =
                matches!(&e.body, wire::EventBody::TurnEnd { turn_id: t, .. } if t == turn_id);
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// The close code the server sends next, skipping anything before it.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(c) = self.next().await {
                return c;
            }
        }
    }

    pub async fn send_json(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }
}
