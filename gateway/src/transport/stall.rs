//! Sockets whose writes may not stall forever.
//!
//! A peer that stops reading leaves its socket's send buffer full. A WebSocket task notices
//! through its outbox (4008), but an SSE body is pulled by hyper only when hyper can write, so
//! nothing above the socket can end it. Here a write (or flush) that stays pending longer than
//! the limit fails with `TimedOut`, and whoever owns the connection drops it. The timer exists
//! only while a write is stalled, so an idle connection pays for an empty `Option`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A stream whose writes fail after stalling `limit`.
pub struct StallGuard<S> {
    inner: S,
    /// Milliseconds (not a `Duration`: this exists once per idle endpoint, so 4 bytes count).
    limit_ms: u32,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallGuard<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        let limit_ms = u32::try_from(limit.as_millis()).unwrap_or(u32::MAX);
        StallGuard { inner, limit_ms, stalled: None }
    }

    /// The stream, for what needs no stall timer (a write that never waits).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Turns a pending write into an error once it has been pending for `limit`.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = Duration::from_millis(self.limit_ms.into());
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")))
    }

    fn track<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test(start_paused = true)]
    async fn a_write_that_stalls_past_the_limit_fails() {
        // A 16-byte pipe nobody reads: the second write stalls.
        let (a, _b) = tokio::io::duplex(16);
        let mut g = StallGuard::new(a, Duration::from_secs(5));
        g.write_all(&[0; 16]).await.unwrap();
        let err = g.write_all(&[0; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_makes_progress_is_kept() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut g = StallGuard::new(a, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0; 16];
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                b.read_exact(&mut buf).await.unwrap();
            }
        });
        // Every write waits 3 s for the reader: slow, but never 5 s without progress.
        for _ in 0..5 {
            g.write_all(&[1; 16]).await.unwrap();
        }
        reader.await.unwrap();
        assert!(g.stalled.is_none());
    }

    #[tokio::test]
    async fn a_real_socket_whose_peer_never_reads_fails_within_the_limit() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut g = StallGuard::new(server, Duration::from_millis(300));
        let chunk = vec![0u8; 64 * 1024];
        let started = std::time::Instant::now();
        let err = loop {
            if let Err(e) = g.write_all(&chunk).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the socket never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
