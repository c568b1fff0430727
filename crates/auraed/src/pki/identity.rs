//! The names a client certificate speaks for, which authorization matches
//! against its allow lists.

use x509_parser::extensions::GeneralName;

use super::error::PkiError;
use super::issue::x509_error;

/// The subject CN(s) and the SAN DNS names, e-mail addresses and URIs of a
/// DER certificate, in that order, without duplicates (a client certificate
/// from `init` has CN = SAN = its name and yields it once). Values that are
/// not valid UTF-8 are skipped rather than guessed at.
///
/// This only reads the certificate: the caller must have verified it (the
/// TLS handshake does).
pub fn identities_from_der(cert_der: &[u8]) -> Result<Vec<String>, PkiError> {
    let what = "the peer certificate";
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| x509_error(e, what))?;
    let mut names: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !s.is_empty() && !names.iter().any(|n| n == s) {
            names.push(s.to_string());
        }
    };
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            push(s);
        }
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|source| PkiError::X509 {
            what: what.into(),
            source,
        })?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => push(s),
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    #[test]
    fn yields_cn_then_san_names_once() {
        let mut params = CertificateParams::default();
        params.distinguished_name.remove(DnType::CommonName);
        params.distinguished_name.push(DnType::CommonName, "alice");
        params.subject_alt_names = vec![
            SanType::DnsName("alice".try_into().expect("ia5")),
            SanType::DnsName("alice.example".try_into().expect("ia5")),
            SanType::Rfc822Name("alice@example.org".try_into().expect("ia5")),
            SanType::URI("spiffe://aurae/alice".try_into().expect("ia5")),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let names = identities_from_der(cert.der()).expect("parse");
        assert_eq!(
            names,
            [
                "alice",
                "alice.example",
                "alice@example.org",
                "spiffe://aurae/alice"
            ]
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            identities_from_der(b"not a certificate"),
            Err(PkiError::X509 { .. })
        ));
    }
}
