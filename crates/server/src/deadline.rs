//! Deadlines on a client connection's socket, below HTTP, for the clients
//! that HTTP's own timeouts never see.
//!
//! - **A request that never starts.** hyper's header timeout starts when it
//!   begins to read a request head; but before that, the server reads the
//!   first bytes to tell HTTP/1 from HTTP/2's preface (24 bytes), with no
//!   timeout: a client that connects and sends nothing would hold its socket
//!   and task forever. So until the connection has read 24 bytes or written
//!   anything (a response means the request was read), a read that waits
//!   past `http.header_timeout` since the accept fails the connection.
//! - **A client that takes nothing.** A response (an SSE stream above all)
//!   to a client that stops reading fills the socket's buffers, then every
//!   write waits; the stream's own queue is bounded, but the connection, its
//!   task and its slot would stay. A write that makes no progress for
//!   `http.write_timeout` fails the connection, which frees all of it.
//!
//! A read that waits once the request has begun (an idle keep-alive
//! connection, a stream whose client sends nothing more) is never timed
//! here: hyper times request heads, websockets their pings.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes after which a connection has surely begun a request: HTTP/2's
/// preface, the longest prefix read before hyper's own timeout starts.
const STARTED_AFTER: usize = 24;

/// A socket with the two deadlines of the module doc.
#[derive(Debug)]
pub struct Deadlines<IO> {
    io: IO,
    /// Armed until the request has begun.
    start: Option<Pin<Box<Sleep>>>,
    read: usize,
    write_timeout: Duration,
    /// Armed while a write waits.
    stall: Option<Pin<Box<Sleep>>>,
}

impl<IO> Deadlines<IO> {
    /// `io`, just accepted: its request must begin within `start_timeout`,
    /// and no write may wait longer than `write_timeout`.
    pub fn new(io: IO, start_timeout: Duration, write_timeout: Duration) -> Self {
        Deadlines {
            io,
            start: Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + start_timeout,
            ))),
            read: 0,
            write_timeout,
            stall: None,
        }
    }

    /// Bytes written (not a mere flush, which hyper makes on every turn):
    /// the request has begun.
    fn wrote(&mut self, r: &Poll<io::Result<usize>>) {
        if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.start = None;
        }
    }

    /// A write's outcome, with the stall deadline kept: armed at the first
    /// wait, cleared by any answer.
    fn timed<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stall.as_mut().poll(cx).is_ready() {
                    self.stall = None;
                    metrics::counter!("cds_events_connections_timed_out_total", "why" => "write")
                        .increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took no bytes within http.write_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlines<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let n = buf.filled().len() - before;
                this.read += n;
                // An end of stream or an error ends the connection anyway.
                if this.read >= STARTED_AFTER || n == 0 {
                    this.start = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if let Some(start) = this.start.as_mut()
                    && start.as_mut().poll(cx).is_ready()
                {
                    this.start = None;
                    metrics::counter!("cds_events_connections_timed_out_total", "why" => "start")
                        .increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request began within http.header_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlines<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&r);
        this.timed(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        this.timed(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.timed(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.timed(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_fails_at_the_start_deadline() {
        let (server, _client) = tokio::io::duplex(1024);
        let mut s = Deadlines::new(server, Duration::from_secs(30), LONG);
        let err = s.read(&mut [0; 16]).await.expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_begun_request_is_never_timed_on_reads() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut s = Deadlines::new(server, Duration::from_secs(30), LONG);
        client
            .write_all(b"GET /v2/events/stream HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0; 64];
        assert!(s.read(&mut buf).await.expect("read") >= STARTED_AFTER);
        // Idle far past the start deadline, then more comes.
        let more = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(600)).await;
            client.write_all(b"x").await.expect("write");
            client
        });
        assert_eq!(s.read(&mut buf).await.expect("read"), 1);
        drop(more.await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_request_answered_is_begun() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut s = Deadlines::new(server, Duration::from_secs(30), LONG);
        client
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("w");
        let mut buf = [0; 64];
        assert_eq!(s.read(&mut buf).await.expect("read"), 18);
        s.write_all(b"HTTP/1.0 200 OK\r\n").await.expect("answer");
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(600)).await;
            client.write_all(b"x").await.expect("write");
            client
        });
        assert_eq!(s.read(&mut buf).await.expect("read"), 1);
        drop(late.await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_never_takes_fails_at_the_write_deadline() {
        let (server, _client) = tokio::io::duplex(64);
        let mut s = Deadlines::new(server, LONG, Duration::from_secs(60));
        let err = s.write_all(&[b'x'; 4096]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_moving_reader_is_kept() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut s = Deadlines::new(server, LONG, Duration::from_secs(60));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0; 64];
            while got < 1024 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                got += client.read(&mut buf).await.expect("read");
            }
        });
        s.write_all(&[b'x'; 1024])
            .await
            .expect("every write moved in time");
        reader.await.expect("reader");
    }
}
