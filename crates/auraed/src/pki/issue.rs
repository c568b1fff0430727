//! Certificate generation with rcgen: the CA, the server certificate and
//! client certificates, all ECDSA P-256 (what rcgen and rustls agree on
//! without extra features).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::error::PkiError;
use super::layout::DEFAULT_SERVER_NAME;
use crate::validation::validate_name;

/// Longest validity accepted, so that date arithmetic cannot overflow.
pub const MAX_VALIDITY_DAYS: u32 = 100 * 366;
/// Certificates start slightly in the past so that a peer whose clock runs
/// a little behind still accepts a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::minutes(5);
const ORGANIZATION: &str = "Aurae";

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that can sign: its certificate, its key and its expiry.
pub(super) struct Ca {
    pub(super) pem: CertAndKey,
    issuer: Issuer<'static, KeyPair>,
    not_after: OffsetDateTime,
    /// Used in messages, e.g. the path it was loaded from.
    what: String,
}

impl Ca {
    pub(super) fn generate(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, PkiError> {
        check_validity(not_before, not_after)?;
        let what = "the CA".to_string();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("Aurae CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: what.clone(),
            source,
        })?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: what.clone(),
                source,
            })?;
        let pem = CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            pem,
            issuer: Issuer::new(params, key),
            not_after,
            what,
        })
    }

    /// Loads a CA from PEM; `what` names it in errors (e.g. its path).
    pub(super) fn from_pem(cert_pem: &str, key_pem: &str, what: &str) -> Result<Self, PkiError> {
        let what = what.to_string();
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::Key {
            what: what.clone(),
            source,
        })?;
        let der = pem_to_der(cert_pem, &what)?;
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| x509_error(e, &what))?;
        // A key from another CA would sign certificates nobody can verify.
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch { what });
        }
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key).map_err(|source| {
            PkiError::Generate {
                what: format!("an issuer from {what}"),
                source,
            }
        })?;
        let pem = CertAndKey {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        };
        Ok(Self {
            pem,
            issuer,
            not_after,
            what,
        })
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses).
    pub(super) fn issue_server(
        &self,
        names: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertAndKey, PkiError> {
        let what = "the server certificate";
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|source| PkiError::Generate {
                what: what.into(),
                source,
            })?;
        params.distinguished_name = dn(DEFAULT_SERVER_NAME);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, not_before, not_after, what)
    }

    /// Issues a client certificate whose CN and DNS SAN are `name`.
    pub(super) fn issue_client(
        &self,
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertAndKey, PkiError> {
        validate_name("client name", name).map_err(PkiError::InvalidClientName)?;
        let what = format!("the certificate of client {name:?}");
        let san = name.try_into().map_err(|source| PkiError::Generate {
            what: what.clone(),
            source,
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.subject_alt_names = vec![SanType::DnsName(san)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, not_before, not_after, &what)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        what: &str,
    ) -> Result<CertAndKey, PkiError> {
        check_validity(not_before, not_after)?;
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let generate = |source| PkiError::Generate {
            what: what.to_string(),
            source,
        };
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Validity for a new certificate of `days` from `now`, cut at the CA's
    /// own expiry (a certificate cannot usefully outlive its CA).
    pub(super) fn leaf_validity(
        &self,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
        if self.not_after <= now {
            return Err(PkiError::CaExpired {
                what: self.what.clone(),
                not_after: self.not_after,
            });
        }
        let (not_before, not_after) = validity(now, days)?;
        Ok((not_before, not_after.min(self.not_after)))
    }

    /// True when `cert_pem` parses and carries a signature of this CA's key.
    pub(super) fn signed(&self, cert_pem: &str) -> bool {
        signed_by(cert_pem, &self.pem.cert_pem)
    }
}

/// `not_before`/`not_after` for a certificate valid `days` from `now`.
pub(super) fn validity(
    now: OffsetDateTime,
    days: u32,
) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    if days == 0 || days > MAX_VALIDITY_DAYS {
        return Err(PkiError::Validity {
            days,
            max: MAX_VALIDITY_DAYS,
        });
    }
    Ok((now - CLOCK_SKEW, now + Duration::days(i64::from(days))))
}

fn check_validity(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<(), PkiError> {
    if not_after <= not_before {
        return Err(PkiError::EmptyValidity {
            not_before,
            not_after,
        });
    }
    Ok(())
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

pub(super) fn pem_to_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: what.to_string(),
        source: nom_error(e, x509_parser::error::PEMError::IncompletePEM),
    })?;
    Ok(pem.contents)
}

pub(super) fn x509_error(
    e: x509_parser::nom::Err<x509_parser::error::X509Error>,
    what: &str,
) -> PkiError {
    PkiError::X509 {
        what: what.to_string(),
        source: nom_error(e, x509_parser::error::X509Error::InvalidCertificate),
    }
}

/// The parser's error, or `incomplete` when the input ended early.
fn nom_error<E>(e: x509_parser::nom::Err<E>, incomplete: E) -> E {
    match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
        x509_parser::nom::Err::Incomplete(_) => incomplete,
    }
}

/// True when `cert_pem` carries a valid signature by the key of `ca_pem`.
pub(super) fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert_der), Ok(ca_der)) = (
        pem_to_der(cert_pem, "certificate"),
        pem_to_der(ca_pem, "CA"),
    ) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(&cert_der),
        X509Certificate::from_der(&ca_der),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// A new self-signed CA valid from `not_before` to `not_after`, e.g. a
/// second, unrelated CA for tests that a foreign client is refused.
pub fn generate_ca(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertAndKey, PkiError> {
    Ok(Ca::generate(not_before, not_after)?.pem)
}

/// Issues a client certificate for `name` (CN and DNS SAN, client-auth EKU)
/// from the CA in `ca_cert_pem`/`ca_key_pem`, valid exactly from
/// `not_before` to `not_after`: a window in the past gives an expired
/// certificate for tests. Returns `(cert_pem, key_pem)`.
pub fn issue_client_with_validity(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    let ca = Ca::from_pem(ca_cert_pem, ca_key_pem, "the CA")?;
    let issued = ca.issue_client(name, not_before, not_after)?;
    Ok((issued.cert_pem, issued.key_pem))
}

/// Issues a server certificate for `names` (DNS names or IP addresses; the
/// first one should be what clients verify, by default
/// `server.unsafe.aurae.io`) from the given CA, valid from `not_before` to
/// `not_after`. For tests and for nested instances.
pub fn issue_server_with_validity(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertAndKey, PkiError> {
    Ca::from_pem(ca_cert_pem, ca_key_pem, "the CA")?.issue_server(names, not_before, not_after)
}

/// What a parent issues a nested instance (shared/spec/wire.md): a server
/// certificate naming it by `names` (its name and its address), and a
/// client certificate `client` for the parent's own calls to it; each with
/// a fresh key, valid `days` from now but never past the CA's expiry.
/// `what` names the CA in errors (e.g. the path of its key).
pub fn issue_instance_pair(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    what: &str,
    names: &[String],
    client: &str,
    days: u32,
) -> Result<(CertAndKey, CertAndKey), PkiError> {
    let ca = Ca::from_pem(ca_cert_pem, ca_key_pem, what)?;
    let (not_before, not_after) = ca.leaf_validity(OffsetDateTime::now_utc(), days)?;
    let server = ca.issue_server(names, not_before, not_after)?;
    let client = ca.issue_client(client, not_before, not_after)?;
    Ok((server, client))
}
