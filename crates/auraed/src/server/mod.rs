//! Transport: the Unix socket and optional TCP listener, mutual TLS on both,
//! authorization, health and reflection, and graceful shutdown.

mod accept;
mod authz_layer;
mod fd_limit;
mod identity;
mod live_policy;
mod socket;
mod tls;
mod too_large;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;

pub use accept::HandshakeLimits;
pub use aurae_policy::{Catalog, Policy, PolicyError};
pub use authz_layer::AuthzLayer;
pub use fd_limit::raise_nofile_limit;
pub use identity::peer_names;
pub use live_policy::{reload_on_sighup, LivePolicy};
pub use socket::bind_unix;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("reading the {what} {path} (run `auraed pki init` or pass --bootstrap)")]
    ReadPki {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} socket {path}")]
    Socket {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("another auraed is answering on {path}: stop it or choose another --socket")]
    SocketInUse { path: String },
    #[error("listening on {addr}")]
    Tcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {what} {path}: {reason}")]
    BadPki {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("configuring TLS: {0}")]
    Tls(String),
    #[error("serving")]
    Serve(#[source] tonic::transport::Error),
    #[error(transparent)]
    Authz(#[from] PolicyError),
}

/// Where and how to listen.
pub struct Listeners {
    pub socket: PathBuf,
    pub socket_group: Option<nix::unistd::Gid>,
    pub tcp: Option<SocketAddr>,
    pub ca_crt: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    pub handshakes: HandshakeLimits,
}

/// A bound server, ready to serve: binding is separate so that a caller
/// knows the sockets exist (and errors surface) before anything is served.
pub struct Bound {
    unix: tokio::net::UnixListener,
    tcp: Option<tokio::net::TcpListener>,
    socket: PathBuf,
    tls: tokio_rustls::TlsAcceptor,
    handshakes: HandshakeLimits,
}

impl Bound {
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }
}

pub async fn bind(l: &Listeners) -> Result<Bound, ServerError> {
    let tls = tls::server_tls(&l.ca_crt, &l.server_crt, &l.server_key)?;
    let unix = bind_unix(&l.socket, l.socket_group)?;
    let tcp = match l.tcp {
        Some(addr) => Some(bind_tcp(addr).map_err(|source| ServerError::Tcp { addr, source })?),
        None => None,
    };
    Ok(Bound {
        unix,
        tcp,
        socket: l.socket.clone(),
        tls,
        handshakes: l.handshakes,
    })
}

/// A connection burst larger than the accept queue is partly dropped by the
/// kernel while the client believes it is connected: a deep queue (the
/// kernel caps it at net.core.somaxconn) lets the accept loop see, and
/// refuse at once, what is over its handshake cap.
const TCP_BACKLOG: u32 = 4096;

fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restarted daemon can bind while old
    // connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(TCP_BACKLOG)
}

/// Serves `routes` on every bound listener until `shutdown` is cancelled,
/// then removes the socket.
pub async fn serve(
    bound: Bound,
    routes: Routes,
    policy: Arc<LivePolicy>,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let builder = || {
        Server::builder().tcp_nodelay(true).layer(
            tower::ServiceBuilder::new()
                .map_response(too_large::too_large_is_resource_exhausted)
                .layer(AuthzLayer::new(policy.clone()))
                .into_inner(),
        )
    };
    let unix_incoming = accept::tls_incoming(
        "unix",
        UnixListenerStream::new(bound.unix),
        bound.tls.clone(),
        bound.handshakes,
        |_| {},
    );
    let unix = builder()
        .add_routes(routes.clone())
        .serve_with_incoming_shutdown(unix_incoming, shutdown.clone().cancelled_owned());
    let tcp = bound.tcp.map(|listener| {
        let incoming = accept::tls_incoming(
            "tcp",
            TcpListenerStream::new(listener),
            bound.tls.clone(),
            bound.handshakes,
            |s: &tokio::net::TcpStream| {
                let _ = s.set_nodelay(true);
            },
        );
        builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
    });
    let result = match tcp {
        Some(tcp) => tokio::try_join!(unix, tcp).map(|_| ()),
        None => unix.await,
    };
    if let Err(e) = std::fs::remove_file(&bound.socket) {
        tracing::warn!(socket = %bound.socket.display(), error = %e, "removing the socket");
    }
    result.map_err(ServerError::Serve)
}
