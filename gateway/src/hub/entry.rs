//! A published log event, serialized once and shared by every endpoint that sends it.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::time::Instant;

/// One event of a user's log. Endpoints share it through an `Arc`; the JSON is built once at
/// publish time and the SSE framing once, on the first SSE delivery.
#[derive(Debug)]
pub struct Entry {
    /// The life of the log it belongs to: an endpoint of another life must not take it.
    pub epoch: Arc<str>,
    pub seq: u64,
    /// The event `type`, also the SSE `event:` name.
    pub kind: &'static str,
    /// The JSON text of the event, `seq` included: the WebSocket frame as is.
    pub json: Utf8Bytes,
    /// When it was appended, for retention by age.
    pub at: Instant,
    /// `id:`/`event:`/`data:` framing, built lazily: most users have no SSE endpoint.
    sse: OnceLock<Bytes>,
}

impl Entry {
    /// Builds the entry from the event body's JSON (`{"type":…}`), splicing in `seq` so the body
    /// can be serialized before the log lock is taken.
    pub fn new(epoch: Arc<str>, seq: u64, kind: &'static str, body_json: &str) -> Entry {
        let rest = body_json.strip_prefix('{').unwrap_or(body_json);
        Self::with_json(epoch, seq, kind, format!("{{\"seq\":{seq},{rest}"))
    }

    /// An entry whose JSON already holds its `seq` (as it comes back from Redis).
    pub fn with_json(epoch: Arc<str>, seq: u64, kind: &'static str, json: String) -> Entry {
        let json = Utf8Bytes::from(json);
        Entry { epoch, seq, kind, json, at: Instant::now(), sse: OnceLock::new() }
    }

    /// The SSE frame of this entry: `id: <epoch>:<seq>`.
    pub fn sse_frame(&self) -> &Bytes {
        self.sse.get_or_init(|| {
            Bytes::from(format!(
                "id: {}:{}\nevent: {}\ndata: {}\n\n",
                self.epoch,
                self.seq,
                self.kind,
                self.json.as_str()
            ))
        })
    }
}

/// Distinct event types seen in JSON from elsewhere, each leaked once: there are a handful, and
/// past [`MAX_KINDS`] (never, unless something writes garbage to our keys) none is added.
static KINDS: parking_lot::RwLock<Vec<&'static str>> = parking_lot::RwLock::new(Vec::new());
const MAX_KINDS: usize = 256;

/// The `type` of an event JSON as a log holds it (`{"seq":N,"type":"…",…}`), as a `&'static
/// str`. Any type is taken: an event family added to the domain needs no list here.
pub fn kind_of(json: &str) -> Option<&'static str> {
    let at = json.find(",\"type\":\"")? + 9;
    let name = &json[at..at + json[at..].find('"')?];
    if let Some(k) = KINDS.read().iter().find(|k| **k == name) {
        return Some(k);
    }
    let mut kinds = KINDS.write();
    if let Some(k) = kinds.iter().find(|k| **k == name) {
        return Some(k);
    }
    if kinds.len() >= MAX_KINDS {
        return None;
    }
    let k: &'static str = Box::leak(name.to_owned().into_boxed_str());
    kinds.push(k);
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_type_is_read_and_held_once() {
        let j = "{\"seq\":42,\"type\":\"task.status\",\"text\":\"a\\\"type\\\":\\\"x\"}";
        let a = kind_of(j).unwrap();
        assert_eq!(a, "task.status");
        assert!(std::ptr::eq(a, kind_of(j).unwrap()));
        assert!(kind_of("{\"seq\":1}").is_none());
    }

    #[test]
    fn seq_is_spliced_in_front() {
        let e = Entry::new(
            Arc::from("ep"),
            9,
            "notification.read",
            r#"{"type":"notification.read","id":"n1"}"#,
        );
        assert_eq!(e.json.as_str(), r#"{"seq":9,"type":"notification.read","id":"n1"}"#);
        let v: wire::LogEvent = serde_json::from_str(e.json.as_str()).unwrap();
        assert_eq!(v.seq, 9);
        assert_eq!(
            e.sse_frame().as_ref(),
            b"id: ep:9\nevent: notification.read\ndata: {\"seq\":9,\"type\":\"notification.read\",\"id\":\"n1\"}\n\n"
        );
    }
}
