//! Lets the frames of one request leave in one write.
//!
//! hyper's HTTP/2 client sends a request's body from a second task: a new
//! stream gets no send window until the connection task has opened it, so
//! the connection task flushes the HEADERS frame alone and the DATA frame
//! follows in a second flush. Each flush is a TLS record and a `sendmsg`,
//! and the daemon wakes for each. Holding a flush back for one turn of the
//! scheduler lets the body task queue its DATA first, so both records leave
//! in one write and the daemon reads the whole call at once, as Nagle's
//! algorithm or `TCP_CORK` would do for a socket, at the cost of one task
//! yield rather than a timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a writer may queue before it has to wait for the socket. It is
/// above a full TLS record (16 KiB and its overhead), so one record never
/// waits for another, and small enough that a connection holds little.
const MAX_PENDING: usize = 64 * 1024;

/// A byte stream whose writes are queued and sent at the flush after the
/// one that queued them: the first flush of a batch only yields.
#[derive(Debug)]
pub(crate) struct Coalesced<T> {
    io: T,
    pending: Vec<u8>,
    /// The first flush of the queued bytes has yielded; the next sends them.
    yielded: bool,
}

impl<T> Coalesced<T> {
    pub(crate) fn new(io: T) -> Self {
        Self {
            io,
            pending: Vec::new(),
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// Sends every queued byte, however many writes the socket takes.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        self.yielded = false;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.pending.len() >= MAX_PENDING {
            std::task::ready!(me.poll_send(cx))?;
        }
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(MAX_PENDING - me.pending.len());
            me.pending.extend_from_slice(&buf[..n]);
            taken += n;
            if n < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if !me.pending.is_empty() && !me.yielded {
            // Rescheduled behind the tasks this one has just woken, such as
            // the body task given its send window.
            me.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(me.poll_send(cx))?;
        Pin::new(&mut me.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        std::task::ready!(me.poll_send(cx))?;
        Pin::new(&mut me.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the socket, as strace would.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        /// How many bytes each write accepts, to exercise partial writes.
        accept: Option<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let me = self.get_mut();
            let n = me.accept.map_or(buf.len(), |a| a.min(buf.len()));
            me.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn two_flushed_writes_leave_as_one() {
        let mut io = Coalesced::new(Recorder::default());
        io.write_all(b"HEADERS").await.expect("write");
        // The first flush only yields; nothing has reached the socket.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(io.io.writes.is_empty());
        io.write_all(b"DATA").await.expect("write");
        io.flush().await.expect("flush");
        assert_eq!(io.io.writes, vec![b"HEADERSDATA".to_vec()]);
        // A later batch starts over: it yields once, then goes.
        io.write_all(b"PING").await.expect("write");
        io.flush().await.expect("flush");
        assert_eq!(io.io.writes.len(), 2);
        assert_eq!(io.io.writes[1], b"PING");
    }

    #[tokio::test]
    async fn a_full_queue_is_sent_before_more_is_taken_and_nothing_is_lost() {
        let mut io = Coalesced::new(Recorder {
            accept: Some(10_000),
            ..Default::default()
        });
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        io.write_all(&data).await.expect("write");
        io.shutdown().await.expect("shutdown");
        assert!(io.io.writes.iter().all(|w| w.len() <= 10_000));
        assert!(io.pending.is_empty());
        assert_eq!(io.io.writes.concat(), data);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = Coalesced::new(a);
        b.write_all(b"reply").await.expect("write");
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"reply");
    }
}
