//! An SSE client: parses `text/event-stream` as a browser's EventSource would.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;

pub struct SseClient {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: Vec<u8>,
    pub status: u16,
}

/// One SSE event (comments skipped).
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    pub retry: Option<u64>,
}

impl SseClient {
    pub async fn connect(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> Result<Self, reqwest::Error> {
        let sep = if query.is_empty() { "" } else { "&" };
        let mut req = http.get(format!("{url}?access_token={token}{sep}{query}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok(SseClient { stream: Box::pin(resp.bytes_stream()), buf: Vec::new(), status })
    }

    /// Reads an SSE response already made (a POST, say).
    pub fn from_response(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        SseClient { stream: Box::pin(resp.bytes_stream()), buf: Vec::new(), status }
    }

    /// The next event; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let block = String::from_utf8(raw).expect("utf-8 event");
                let mut ev = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                    retry: None,
                };
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') || line.is_empty() {
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    any = true;
                    match field {
                        "id" => ev.id = Some(value.into()),
                        "event" => ev.event = value.into(),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value)
                        }
                        "retry" => ev.retry = value.parse().ok(),
                        _ => {}
                    }
                }
                if any {
                    return Some(ev);
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("timed out waiting for SSE data");
            match chunk {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                _ => return None,
            }
        }
    }

    pub async fn event(&mut self) -> SseEvent {
        self.next().await.expect("SSE stream ended")
    }

    /// The hello's JSON.
    pub async fn hello(&mut self) -> serde_json::Value {
        let e = self.event().await;
        assert_eq!(e.event, "hello");
        assert!(e.id.is_none(), "hello carries no id");
        serde_json::from_str(&e.data).unwrap()
    }
}
