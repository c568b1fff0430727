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
    let der = leaf.as_ref();
    let mut cache = match PARSED.lock() {
        Ok(cache) => cache,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(i) = cache.iter().position(|(d, _)| d.as_ref() == der) {
        let hit = cache.remove(i);
        let names = hit.1.clone();
        cache.insert(0, hit);
        return names;
    }
    let names = crate::pki::identities_from_der(der).unwrap_or_default();
    cache.truncate(CACHED - 1);
    cache.insert(0, (der.into(), names.clone()));
    names
}

/// Certificates whose names are kept parsed: every call of a connection
/// carries the same one, and parsing it cost more than the rest of
/// authorising the call. Only certificates the TLS layer verified get here.
const CACHED: usize = 16;

/// A certificate (DER) and its names.
type Parsed = (Box<[u8]>, Vec<String>);

/// The most recently seen certificates, newest first.
static PARSED: std::sync::Mutex<Vec<Parsed>> = std::sync::Mutex::new(Vec::new());
