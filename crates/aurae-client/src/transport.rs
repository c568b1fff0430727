//! The mTLS channel to auraed, over its Unix socket or TCP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::coalesce::Coalesced;
use crate::config::{AuraeConfig, AuthConfig, SystemConfig, DEFAULT_SOCKET};
use crate::error::ClientError;

/// Without it a TCP connect to an unreachable host waits for the kernel's
/// retries, minutes; a local socket connects at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "unix socket {}", p.display()),
            Target::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl Target {
    /// The socket or address of `system`; the default socket when it names none.
    pub fn from_config(system: &SystemConfig) -> Result<Self, ClientError> {
        match (&system.socket, &system.address) {
            (Some(socket), Some(address)) => Err(ClientError::AmbiguousTarget {
                socket: socket.clone(),
                address: address.clone(),
            }),
            (None, Some(address)) => Ok(Target::Tcp(address.clone())),
            (Some(socket), None) => Ok(Target::Unix(PathBuf::from(socket))),
            (None, None) => Ok(Target::Unix(PathBuf::from(DEFAULT_SOCKET))),
        }
    }
}

/// Connects now, so that a wrong path, address or certificate shows here
/// rather than at the first call.
pub(crate) async fn connect(config: &AuraeConfig) -> Result<Channel, ClientError> {
    let server_name = config.system.server_name();
    let tls = tls_config(&config.auth, server_name)?;
    let target = Target::from_config(&config.system)?;
    // Over a Unix socket the URI only names the server for TLS and
    // `:authority`; the connector dials the socket.
    let (uri, address) = match &target {
        Target::Unix(_) => (format!("https://{server_name}"), server_name.to_string()),
        Target::Tcp(a) if a.contains("://") => (a.clone(), a.clone()),
        Target::Tcp(a) => (format!("https://{a}"), a.clone()),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|source| ClientError::InvalidAddress { address, source })?
        .tls_config(tls)
        .map_err(ClientError::Tls)?
        .connect_timeout(CONNECT_TIMEOUT);
    let connect_error = |source| ClientError::Connect {
        target: target.to_string(),
        source,
    };
    match &target {
        Target::Unix(path) => {
            let dial = path.clone();
            let connector = tower::service_fn(move |_: Uri| {
                let path = dial.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(Coalesced::new(stream)))
                }
            });
            endpoint
                .connect_with_connector(connector)
                .await
                .map_err(|source| {
                    if is_permission_denied(&source) {
                        socket_denied(path)
                    } else {
                        connect_error(source)
                    }
                })
        }
        Target::Tcp(_) => endpoint
            .connect_with_connector(tower::service_fn(dial_tcp))
            .await
            .map_err(connect_error),
    }
}

/// The endpoint's host and port, without Nagle's delay: [`Coalesced`]
/// already sends a call's frames in one write.
async fn dial_tcp(uri: Uri) -> std::io::Result<TokioIo<Coalesced<tokio::net::TcpStream>>> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host"))?;
    // An IPv6 literal keeps its brackets in a URI, not in a socket address.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(TokioIo::new(Coalesced::new(stream)))
}

fn is_permission_denied(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// What stands between this user and the socket: a directory on the way,
/// or the socket's own mode and group.
fn socket_denied(path: &Path) -> ClientError {
    let detail = match crate::access::blocking_dir(path) {
        Some(dir) => format!(
            "the directory {} is not accessible to this user",
            dir.display()
        ),
        None => crate::access::mode_owner_group(path)
            .unwrap_or_else(|| "its mode and group could not be read".into()),
    };
    ClientError::SocketDenied {
        path: path.to_path_buf(),
        detail,
    }
}

fn tls_config(auth: &AuthConfig, server_name: &str) -> Result<ClientTlsConfig, ClientError> {
    let ca = read_pem(&auth.ca_crt, "CA certificate", "CERTIFICATE-----")?;
    let cert = read_pem(&auth.client_crt, "client certificate", "CERTIFICATE-----")?;
    let key = read_pem(&auth.client_key, "client key", "PRIVATE KEY-----")?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(server_name))
}

/// Reads a PEM file; checking the armor here gives an error that names the
/// file, where rustls would later only say that no certificate was found.
fn read_pem(path: &Path, what: &'static str, armor: &str) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::ReadPem {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if !text.contains(armor) {
        return Err(ClientError::NotPem {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(socket: Option<&str>, address: Option<&str>) -> SystemConfig {
        SystemConfig {
            socket: socket.map(String::from),
            address: address.map(String::from),
            server_name: None,
        }
    }

    #[test]
    fn target_follows_the_config() {
        assert_eq!(
            Target::from_config(&system(None, None)).expect("default"),
            Target::Unix(DEFAULT_SOCKET.into())
        );
        assert_eq!(
            Target::from_config(&system(Some("/s"), None)).expect("unix"),
            Target::Unix("/s".into())
        );
        assert_eq!(
            Target::from_config(&system(None, Some("h:1"))).expect("tcp"),
            Target::Tcp("h:1".into())
        );
        assert!(matches!(
            Target::from_config(&system(Some("/s"), Some("h:1"))),
            Err(ClientError::AmbiguousTarget { .. })
        ));
    }

    #[test]
    fn unreadable_or_non_pem_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.crt");
        std::fs::write(&junk, "hello").expect("write");
        let auth = AuthConfig {
            ca_crt: junk.clone(),
            client_crt: junk.clone(),
            client_key: junk.clone(),
        };
        let err = tls_config(&auth, "x").expect_err("not pem");
        assert!(matches!(
            err,
            ClientError::NotPem {
                what: "CA certificate",
                ..
            }
        ));
        assert!(err.to_string().contains("junk.crt"), "{err}");

        let missing = dir.path().join("missing.key");
        let err = read_pem(&missing, "client key", "PRIVATE KEY-----").expect_err("missing");
        assert!(err.to_string().contains("missing.key"), "{err}");
    }
}
