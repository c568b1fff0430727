//! Server TLS: the server's certificate and key, and the CA that every client
//! certificate must chain to (client authentication is required).

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::ServerError;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::ReadPki {
        what,
        path: path.display().to_string(),
        source,
    })
}

pub fn server_tls(
    ca_crt: &Path,
    server_crt: &Path,
    server_key: &Path,
) -> Result<ServerTlsConfig, ServerError> {
    let ca = read("CA certificate", ca_crt)?;
    let cert = read("server certificate", server_crt)?;
    let key = read("server key", server_key)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false))
}
