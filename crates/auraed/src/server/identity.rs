//! The caller's identity: the names in its verified client certificate.

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};

/// The CN and SAN names of the peer's certificate, empty when none is found.
pub fn peer_names(ext: &http::Extensions) -> Vec<String> {
    let certs = ext
        .get::<TlsConnectInfo<UdsConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.peer_certs())
        });
    let Some(certs) = certs else {
        return Vec::new();
    };
    let Some(leaf) = certs.first() else {
        return Vec::new();
    };
    crate::pki::identities_from_der(leaf.as_ref()).unwrap_or_default()
}
