//! Server TLS: the server's certificate and key, and the CA that every client
//! certificate must chain to (client authentication is required).

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::ServerError;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::ReadPki {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_reader_iter(&mut Cursor::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::BadPki {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ServerError::BadPki {
            what,
            path: path.display().to_string(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

/// The TLS acceptor of every listener. The handshake is done by the daemon's
/// own accept loop (see `accept.rs`), so that it is bounded in time and in
/// number before any byte reaches HTTP/2.
pub fn server_tls(
    ca_crt: &Path,
    server_crt: &Path,
    server_key: &Path,
) -> Result<TlsAcceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs("CA certificate", ca_crt)?);
    if added == 0 {
        return Err(ServerError::BadPki {
            what: "CA certificate",
            path: ca_crt.display().to_string(),
            reason: "no usable CA certificate in it".into(),
        });
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
        .build()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let chain = certs("server certificate", server_crt)?;
    let key_pem = read("server key", server_key)?;
    let key = PrivateKeyDer::from_pem_reader(&mut Cursor::new(key_pem)).map_err(|e| {
        ServerError::BadPki {
            what: "server key",
            path: server_key.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
