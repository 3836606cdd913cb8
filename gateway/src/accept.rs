//! Accepting connections, with every resource a peer holds before it is known bounded:
//!
//! - a global cap on open connections (`GATEWAY_MAX_CONNECTIONS`, by default below the
//!   descriptor limit): past it a connection is served only `/healthz`, `/readyz` and
//!   `/metrics`, anything else gets 503 and the connection closes; a small reserve past that
//!   is closed at once, so the process never runs out of descriptors;
//! - a per-IP cap on connections that have not yet presented a valid token
//!   (`GATEWAY_MAX_PENDING_PER_IP`): past it, 429 the same way;
//! - a header-read timeout (`GATEWAY_HEADER_READ_TIMEOUT_MS`) from the moment a connection is
//!   accepted (hyper's HTTP/1 timer), so a socket that sends nothing, or half a head, goes;
//! - a cap on a request head's bytes (`GATEWAY_MAX_HEADER_BYTES`): above it, 431 with the
//!   protocol's error body; hyper's read buffer, at four times the cap, is the hard stop (its
//!   own 431 without a body, for a head no client sends by mistake).
//!
//! HTTP/1.1 only (WebSocket upgrades ride on it). Each connection is served by its own task; a
//! drain stops accepting, asks every connection to finish its request in flight, and waits.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::transport::stall::StallGuard;

/// Connections past the cap that are still read (to answer health checks) before being closed.
const RESERVE: usize = 64;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    pub max_connections: usize,
    pub max_pending_per_ip: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub write_stall: Duration,
}

/// Open connections and the not-yet-authenticated ones per IP.
pub struct Admission {
    limits: AcceptLimits,
    open: AtomicUsize,
    /// Numbers connections, so a request can name its own.
    next_id: AtomicU64,
    pending: Mutex<Pending>,
}

/// Connections that have not presented a valid token yet: per address, and which they are.
/// Only these are kept: an authenticated connection (every idle WebSocket) costs no entry.
#[derive(Default)]
struct Pending {
    per_ip: HashMap<IpAddr, usize>,
    conns: HashMap<u64, IpAddr>,
}

/// Why a connection is served only the operations routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TooManyConnections,
    TooManyPending,
}

/// The request extension that lets a token check mark its connection authenticated.
#[derive(Clone)]
pub struct ConnHandle {
    admission: Arc<Admission>,
    id: u64,
}

impl ConnHandle {
    /// The connection presented a valid token: it no longer counts against its IP's cap.
    pub fn authenticated(&self) {
        self.admission.authenticated(self.id);
    }
}

impl Admission {
    pub fn new(limits: AcceptLimits) -> Arc<Self> {
        Arc::new(Admission {
            limits,
            open: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending::default()),
        })
    }

    /// Open connections now (for metrics).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts a connection from `ip` in; `None`: close it at once (past the reserve). The
    /// caller must call [`closed`](Self::closed) with the id when it ends.
    fn admit(&self, ip: IpAddr) -> Option<(u64, Option<Refusal>)> {
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        let max = self.limits.max_connections;
        if open >= max + RESERVE {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut pending = self.pending.lock();
        let count = pending.per_ip.entry(ip).or_insert(0);
        let refused = if open >= max {
            Some(Refusal::TooManyConnections)
        } else if *count >= self.limits.max_pending_per_ip {
            Some(Refusal::TooManyPending)
        } else {
            None
        };
        *count += 1;
        pending.conns.insert(id, ip);
        Some((id, refused))
    }

    /// Connection `id` presented a valid token (again is fine).
    fn authenticated(&self, id: u64) {
        let mut pending = self.pending.lock();
        let Some(ip) = pending.conns.remove(&id) else { return };
        if let Some(n) = pending.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                pending.per_ip.remove(&ip);
            }
        }
    }

    /// Connection `id` ended.
    fn closed(&self, id: u64) {
        self.authenticated(id);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` until `stop`, then waits for the connections' requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    admission: Arc<Admission>,
    stop: CancellationToken,
) -> io::Result<()> {
    let tracker = TaskTracker::new();
    loop {
        let (tcp, addr) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin, keep serving the rest.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, refused)) = admission.admit(addr.ip()) else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let socket = Socket {
            inner: StallGuard::new(tcp, admission.limits.write_stall),
            admission: admission.clone(),
            id,
        };
        let handle = ConnHandle { admission: admission.clone(), id };
        let limits = admission.limits;
        let io = TokioIo::new(socket);
        tracker.spawn(connection(io, app.clone(), handle, refused, limits, stop.clone()));
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Serves one connection until it ends, or finishes its request in flight once `stop` fires.
async fn connection(
    io: TokioIo<Socket>,
    app: Router,
    handle: ConnHandle,
    refused: Option<Refusal>,
    limits: AcceptLimits,
    stop: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut req = req.map(Body::new);
        let app = app.clone();
        let handle = handle.clone();
        async move {
            let head = head_bytes(&req);
            if head > limits.max_header_bytes {
                return Ok(head_too_large(head, limits.max_header_bytes));
            }
            let Some(refused) = refused else {
                req.extensions_mut().insert(handle);
                return app.oneshot(req).await;
            };
            if !matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
                return Ok::<_, std::convert::Infallible>(refusal(refused));
            }
            // Health checks are answered, and the connection is not kept for later requests
            // (which it would refuse even once there is room again).
            let mut answer = app.oneshot(req).await?;
            answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok(answer)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((4 * limits.max_header_bytes).max(8192))
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The answer on a connection past a cap: the protocol's error body, then the connection closes.
fn refusal(why: Refusal) -> Response<Body> {
    let (status, code, message) = match why {
        Refusal::TooManyConnections => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this node holds as many connections as it may (GATEWAY_MAX_CONNECTIONS); try another",
        ),
        Refusal::TooManyPending => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_pending_connections",
            "too many connections from this address have not presented a token (GATEWAY_MAX_PENDING_PER_IP)",
        ),
    };
    let mut r = closing_error(status, code, message);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A request head's size as sent, near enough (hyper keeps no raw copy): the request line and
/// every header line.
fn head_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + " HTTP/1.1\r\n".len() + 1;
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    line + headers + 2
}

fn head_too_large(bytes: usize, max: usize) -> Response<Body> {
    let message = format!(
        "the request head is {bytes} bytes, more than {max} (GATEWAY_MAX_HEADER_BYTES): a token \
         or a header too long"
    );
    closing_error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", &message)
}

/// The protocol's error body ([`ApiError`]'s) on an answer after which the connection closes;
/// it never reaches the router, so the router's `no-store` is set here.
fn closing_error(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    let mut r = ApiError::new(status, code, message).into_response();
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The accepted socket: writes that stall fail, and its place in the counts is given back when
/// it closes (an upgraded WebSocket holds it until then). Two words beside the stream: this
/// exists once per idle endpoint.
pub struct Socket {
    inner: StallGuard<tokio::net::TcpStream>,
    admission: Arc<Admission>,
    id: u64,
}

impl Socket {
    /// The TCP stream, for writes that must not wait (`try_write`).
    pub fn tcp(&self) -> &tokio::net::TcpStream {
        self.inner.get_ref()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.admission.closed(self.id);
    }
}

impl tokio::io::AsyncRead for Socket {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Socket {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The default connection cap: below the soft descriptor limit (raised to the hard one first),
/// leaving room for the store, Redis, logs and the reserve.
pub fn default_max_connections() -> usize {
    let limit = raise_descriptor_limit();
    (limit.saturating_sub(256) * 9 / 10).max(64)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go's runtime and nginx operators do);
/// returns the soft limit in force.
fn raise_descriptor_limit() -> usize {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX).min(10_000_000)
}
