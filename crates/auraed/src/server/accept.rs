//! The accept loop of one listener: what a client reaches before it is
//! authenticated, and how that is bounded.
//!
//! - At most `max_handshakes` connections per listener are in their TLS
//!   handshake at once; a connection over the cap is closed at once (so that
//!   the kernel's backlog never fills with a flood, and a legitimate client
//!   gets a prompt refusal to retry rather than a hang).
//! - A handshake that does not finish within `handshake_timeout` is closed.
//! - When the process or the system runs out of file descriptors (or socket
//!   memory), the loop backs off instead of retrying in a busy loop.
//!
//! Only established TLS streams, with a verified client certificate, are
//! handed to the gRPC server.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// Bounds on unauthenticated connections, per listener.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    pub timeout: Duration,
    pub max_handshakes: usize,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts from `listener` and yields only connections whose TLS handshake
/// succeeded. The loop ends when the returned stream is dropped.
pub fn tls_incoming<L, IO>(
    what: &'static str,
    mut listener: L,
    acceptor: TlsAcceptor,
    limits: HandshakeLimits,
    on_accept: fn(&IO),
) -> ReceiverStream<io::Result<TlsStream<IO>>>
where
    L: Stream<Item = io::Result<IO>> + Unpin + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Established connections are taken at once by the server: a short queue.
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    tokio::spawn(async move {
        let mut backoff = BACKOFF_FIRST;
        let mut over_cap = RateLimited::new();
        let mut exhausted = RateLimited::new();
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = listener.next() => next,
            };
            let io = match next {
                None => return,
                Some(Ok(io)) => io,
                Some(Err(e)) if out_of_resources(&e) => {
                    if let Some(n) = exhausted.hit() {
                        tracing::warn!(listener = what, error = %e, times = n, retry_in = ?backoff,
                            "cannot accept connections: out of file descriptors or socket memory");
                    }
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                // A connection reset before it was accepted, and the like.
                Some(Err(e)) => {
                    tracing::debug!(listener = what, error = %e, "accept");
                    continue;
                }
            };
            backoff = BACKOFF_FIRST;
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                if let Some(n) = over_cap.hit() {
                    tracing::warn!(listener = what, limit = limits.max_handshakes, refused = n,
                        "too many connections in their TLS handshake: refusing new ones (--max-handshakes)");
                }
                continue;
            };
            on_accept(&io);
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(limits.timeout, acceptor.accept(io)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(listener = what, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::debug!(listener = what, timeout = ?limits.timeout, "TLS handshake timed out")
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Errors that go away only when something else releases a resource:
/// retrying at once would spin.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// A warning at most every `WARN_EVERY`, saying how often it happened.
struct RateLimited {
    last: Option<Instant>,
    count: u64,
}

impl RateLimited {
    fn new() -> Self {
        Self {
            last: None,
            count: 0,
        }
    }

    /// Some(times since the last warning) when a warning is due.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_backs_off_and_resets_do_not() {
        assert!(out_of_resources(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(out_of_resources(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        assert!(!out_of_resources(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn warnings_are_rate_limited_and_counted() {
        let mut r = RateLimited::new();
        assert_eq!(r.hit(), Some(1));
        assert_eq!(r.hit(), None);
        assert_eq!(r.hit(), None);
        r.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(r.hit(), Some(3));
    }
}
