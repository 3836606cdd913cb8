//! A WebSocket's socket, shared by the endpoint's task and whoever publishes to its user.
//!
//! At a paced load an endpoint is almost always caught up with room in its socket. Then the
//! publisher writes the event's frame itself (`Direct for Wire`: one `try_write` per
//! endpoint, in one pass over the user's endpoints, no task woken), as `loadtest floor-server`
//! does. Everything
//! else (hello, replay, catching up, answers, pings, the close, and whatever a full socket left
//! over) goes through the endpoint's task. Both write whole frames under one lock: the bytes on
//! the socket end at a frame boundary but for what `pending` holds, and `pending` goes out
//! before anything else, so frames never interleave whoever writes them.
//!
//! Server frames are unmasked, so an event's frame is its JSON behind a header of 2 to 10
//! bytes: nothing is copied to frame it, the header and the shared JSON go out in one
//! vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wire::Transport;

use crate::accept::Socket;
use crate::hub::{Direct, Entry, Offer};
use crate::metrics::{Metrics, TenantCounters};

/// The socket and the part of a frame it has not taken yet.
pub struct Wire {
    out: Mutex<Out>,
}

struct Out {
    socket: Socket,
    /// The rest of a frame begun on the socket: written before anything else. Boxed, and only
    /// while there is some: this exists once per idle endpoint.
    #[expect(clippy::box_collection, reason = "8 bytes per idle endpoint instead of 24")]
    pending: Option<Box<Vec<u8>>>,
    /// Where a direct write is counted, once the endpoint is open.
    counts: Option<(Arc<Metrics>, Arc<TenantCounters>)>,
}

/// Frames written per vectored write by the task (two slices each, under `IOV_MAX`).
const GROUP: usize = 64;

/// The header of an unmasked, final text frame of `len` payload bytes (RFC 6455 §5.2).
fn header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Up to [`GROUP`] events, each with its frame header.
type Group<'a> = Vec<(&'a Entry, ([u8; 10], usize))>;

fn group<'a>(entries: impl Iterator<Item = &'a Arc<Entry>>) -> Group<'a> {
    entries.take(GROUP).map(|e| (&**e, header(e.json.len()))).collect()
}

/// The group's frames as one vectored write: header, JSON, header, JSON, …
fn slices<'a>(group: &'a Group<'a>) -> Vec<IoSlice<'a>> {
    group
        .iter()
        .flat_map(|(e, (h, n))| [IoSlice::new(&h[..*n]), IoSlice::new(e.json.as_bytes())])
        .collect()
}

impl Out {
    /// After `w` bytes of `group` went out: how many frames went whole, and whether the next
    /// one was begun (its rest is kept as pending).
    fn advance(&mut self, group: &Group<'_>, mut w: usize) -> (usize, bool) {
        let mut whole = 0;
        for (e, (h, n)) in group {
            let len = n + e.json.len();
            if w < len {
                if w > 0 {
                    self.keep(&[&h[..*n], e.json.as_bytes()], w);
                    return (whole, true);
                }
                break;
            }
            w -= len;
            whole += 1;
        }
        (whole, false)
    }

    /// Writes what is pending; ready once nothing is.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.pending.as_mut() {
            let n = ready!(Pin::new(&mut self.socket).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.drain(..n);
            if pending.is_empty() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Keeps what the socket did not take of a frame made of `parts`, `written` bytes in.
    fn keep(&mut self, parts: &[&[u8]], mut written: usize) {
        for p in parts {
            let skip = written.min(p.len());
            if skip < p.len() {
                self.pending.get_or_insert_default().extend_from_slice(&p[skip..]);
            }
            written -= skip;
        }
    }
}

impl Wire {
    pub fn new(socket: Socket) -> Arc<Wire> {
        let out = Out { socket, pending: None, counts: None };
        Arc::new(Wire { out: Mutex::new(out) })
    }

    /// Counts what the direct path writes as the task would: delivered events and their
    /// latency, under the endpoint's tenant. Set before the direct path is installed.
    pub fn count_as(&self, metrics: Arc<Metrics>, tenant: Arc<TenantCounters>) {
        self.out.lock().counts = Some((metrics, tenant));
    }

    /// Writes `batch` as text frames after anything pending (the task's path).
    pub async fn send(&self, batch: &VecDeque<Arc<Entry>>) -> io::Result<()> {
        let mut done = 0;
        std::future::poll_fn(|cx| self.poll_send(cx, batch, &mut done)).await
    }

    /// `done` counts the frames of `batch` on the socket or in `pending`; cancelling leaves the
    /// socket at a frame boundary (the rest of a begun frame is pending).
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        batch: &VecDeque<Arc<Entry>>,
        done: &mut usize,
    ) -> Poll<io::Result<()>> {
        let mut out = self.out.lock();
        loop {
            ready!(out.poll_drain(cx))?;
            if *done == batch.len() {
                return Poll::Ready(Ok(()));
            }
            let group = group(batch.iter().skip(*done));
            let w = ready!(Pin::new(&mut out.socket).poll_write_vectored(cx, &slices(&group)))?;
            if w == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let (whole, begun) = out.advance(&group, w);
            *done += whole + usize::from(begun);
        }
    }
}

/// The socket as tungstenite sees it: reads, and the frames it writes itself (hello, answers,
/// pings, pongs, the close), each taken whole or not at all, so no frame is split by another.
pub struct Conn {
    wire: Arc<Wire>,
}

impl Conn {
    pub fn new(wire: Arc<Wire>) -> Conn {
        Conn { wire }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.wire.out.lock().socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut out = self.wire.out.lock();
        ready!(out.poll_drain(cx))?;
        // Pending means none of `buf` went out; what part of it did, the rest is kept.
        let n = ready!(Pin::new(&mut out.socket).poll_write(cx, buf))?;
        out.keep(&[buf], n);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.wire.out.lock();
        ready!(out.poll_drain(cx))?;
        Pin::new(&mut out.socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.wire.out.lock();
        ready!(out.poll_drain(cx))?;
        Pin::new(&mut out.socket).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

/// The direct path: as many of the events' frames as the socket takes now, in one write, if
/// nothing is pending (the rest of a frame begun is kept for the task).
impl Direct for Wire {
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer {
        let mut out = self.out.lock();
        let mut offer = Offer { taken: 0, started: false };
        if out.pending.is_some() {
            return offer;
        }
        let group = group(entries.iter());
        // Full (`WouldBlock`) or failed: the task writes them, or learns the socket is gone.
        let Ok(w) = out.socket.tcp().try_write_vectored(&slices(&group)) else { return offer };
        (offer.taken, offer.started) = out.advance(&group, w);
        if let Some((metrics, tenant)) = &out.counts {
            let done = &group[..offer.taken + usize::from(offer.started)];
            metrics.delivered(
                Transport::Ws,
                tenant,
                done.iter().map(|(e, _)| (&e.at, e.json.len())),
            );
            metrics.events_direct.increment(done.len() as u64);
        }
        offer
    }
}

#[cfg(test)]
mod tests {
    use super::header;

    /// These exist once per idle endpoint, behind an `Arc` (16 bytes of counts): each must fit
    /// mimalloc's 128-byte class, or 10,000 idle endpoints cost 320 KB more.
    #[test]
    fn per_endpoint_parts_fit_their_allocation_class() {
        assert!(std::mem::size_of::<super::Wire>() + 16 <= 128);
        assert!(std::mem::size_of::<crate::hub::Outbox>() + 16 <= 128);
    }

    #[test]
    fn headers_take_the_three_length_forms() {
        assert_eq!(&header(125).0[..2], &[0x81, 125]);
        assert_eq!(header(126).1, 4);
        assert_eq!(&header(300).0[..4], &[0x81, 126, 1, 44]);
        assert_eq!(header(65_536).1, 10);
        assert_eq!(&header(65_536).0[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
