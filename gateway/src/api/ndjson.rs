//! A producer's stream of items (`POST /v1/turns/{id}/events`, `POST /v1/tasks/{id}/events`):
//! one JSON item, or NDJSON published as the body arrives (the lines each chunk completes, as
//! one batch). A bad line or a refused item is answered at once, naming the line; the lines
//! before it stay published. What the items are and where they go is the [`Target`]'s.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use wire::api::EventsAccepted;

use super::extract::{body_timeout, read_body};
use crate::error::ApiError;
use crate::state::Limits;

/// Where a producer's items go.
#[async_trait]
pub trait Target: Send + Sync {
    type Item: Send;

    /// One item from its JSON text, or what is wrong with it.
    fn parse(&self, text: &str) -> Result<Self::Item, String>;

    /// Publishes a batch in order: how many went in, the seq of the last, and why the next
    /// did not (its error, and whether it is the item's own fault: a 400 `bad_line`).
    async fn apply(&self, items: Vec<Self::Item>) -> (u64, Option<u64>, Option<(ApiError, bool)>);
}

pub fn is_ndjson(headers: &HeaderMap) -> bool {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
    )
}

/// A body of one JSON item.
pub async fn single<T: Target>(
    target: &T,
    limits: &Limits,
    body: Body,
) -> Result<EventsAccepted, ApiError> {
    let bytes = read_body(body, limits).await?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let item =
        target.parse(text).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_item", m))?;
    match target.apply(vec![item]).await {
        (_, _, Some((e, _))) => Err(e),
        (accepted, last_seq, None) => Ok(EventsAccepted { accepted, last_seq }),
    }
}

/// An NDJSON body, published as it arrives.
pub async fn stream<T: Target>(
    target: &T,
    limits: &Limits,
    body: Body,
) -> Result<EventsAccepted, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut batch = Batch {
        target,
        limits,
        items: Vec::new(),
        lines: Vec::new(),
        line_no: 0,
        accepted: 0,
        last_seq: None,
    };
    let mut total: u64 = 0;
    // A body that completes no item for this long is cut off (408): a trickle does not hold
    // the connection and the work open. One timer for the whole body, moved only when it fires
    // early (an item came meanwhile): no timer work per chunk on the hot path.
    let idle = limits.body_idle_timeout;
    let mut last_item = tokio::time::Instant::now();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = &mut timer => {
                if last_item.elapsed() < idle {
                    timer.as_mut().reset(last_item + idle);
                    continue;
                }
                batch.apply().await?;
                return Err(batch.at(body_timeout(limits), batch.line_no + 1));
            }
        };
        let Some(chunk) = next else { break };
        let lines_before = batch.line_no;
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body failed: {e}")))?;
        total += chunk.len() as u64;
        if total > limits.max_ndjson_body_bytes {
            batch.apply().await?;
            return Err(ApiError::too_large(
                "body_too_large",
                format!(
                    "the NDJSON body is larger than {} bytes; {} item(s) stay published",
                    limits.max_ndjson_body_bytes, batch.accepted
                ),
            ));
        }
        let scanned = buf.len();
        buf.extend_from_slice(&chunk);
        let mut from = scanned;
        while let Some(pos) = buf[from..].iter().position(|b| *b == b'\n') {
            let raw = buf.split_to(from + pos + 1);
            from = 0;
            batch.line(&raw[..raw.len() - 1]).await?;
        }
        if buf.len() > limits.max_ndjson_line_bytes {
            batch.line_no += 1;
            return Err(batch.too_long().await);
        }
        batch.apply().await?;
        if batch.line_no > lines_before {
            last_item = tokio::time::Instant::now();
        }
    }
    if buf.has_remaining() {
        batch.line(&buf).await?;
    }
    batch.apply().await?;
    Ok(EventsAccepted { accepted: batch.accepted, last_seq: batch.last_seq })
}

/// The NDJSON lines read but not yet applied, and what the request has published so far.
struct Batch<'a, T: Target> {
    target: &'a T,
    limits: &'a Limits,
    items: Vec<T::Item>,
    /// The line number of each item in `items`.
    lines: Vec<u64>,
    /// Lines read so far (blank ones included).
    line_no: u64,
    accepted: u64,
    last_seq: Option<u64>,
}

impl<T: Target> Batch<'_, T> {
    /// Takes one complete line. A bad one is answered at once, after the lines before it are
    /// applied.
    async fn line(&mut self, raw: &[u8]) -> Result<(), ApiError> {
        self.line_no += 1;
        if raw.len() > self.limits.max_ndjson_line_bytes {
            return Err(self.too_long().await);
        }
        let parsed = match std::str::from_utf8(raw) {
            Err(_) => Err("not UTF-8".to_owned()),
            Ok(text) if text.trim().is_empty() => return Ok(()),
            Ok(text) => self.target.parse(text.trim()),
        };
        match parsed {
            Ok(item) => {
                self.items.push(item);
                self.lines.push(self.line_no);
                Ok(())
            }
            Err(m) => {
                self.apply().await?;
                Err(self.at(ApiError::new(StatusCode::BAD_REQUEST, "bad_line", m), self.line_no))
            }
        }
    }

    /// The current line is over the limit: apply what came before, then say so.
    async fn too_long(&mut self) -> ApiError {
        if let Err(e) = self.apply().await {
            return e;
        }
        let max = self.limits.max_ndjson_line_bytes;
        let e = ApiError::too_large(
            "line_too_large",
            format!("longer than {max} bytes (GATEWAY_MAX_NDJSON_LINE_BYTES)"),
        );
        self.at(e, self.line_no)
    }

    /// Publishes the lines read so far, as one batch.
    async fn apply(&mut self) -> Result<(), ApiError> {
        if self.items.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.items);
        let lines = std::mem::take(&mut self.lines);
        let (accepted, last_seq, refused) = self.target.apply(items).await;
        self.accepted += accepted;
        self.last_seq = last_seq.or(self.last_seq);
        let Some((mut err, invalid)) = refused else { return Ok(()) };
        let line_no = lines.get(accepted as usize).copied().unwrap_or(self.line_no);
        if invalid {
            err.code = "bad_line";
        }
        Err(self.at(err, line_no))
    }

    /// Names the line and how much of the body stays published.
    fn at(&self, mut e: ApiError, line_no: u64) -> ApiError {
        e.message = format!(
            "line {line_no}: {}; {} earlier item(s) stay published",
            e.message, self.accepted
        );
        e
    }
}
