//! The node's PKI: a CA, the server certificate and client identities for
//! mutual TLS, bootstrapped by [`init`] and extended by [`issue_client`];
//! plus [`identities_from_der`], the names a verified client certificate
//! speaks for, which authorization matches.
//!
//! File names and locations are those of the original Aurae (see `layout`).

mod client_config;
mod enroll;
mod error;
mod files;
mod identity;
mod init;
mod issue;
mod layout;

pub use enroll::{issue_client, ClientFiles};
pub use error::PkiError;
pub use identity::identities_from_der;
pub use init::{init, Outcome, PkiFile, PkiInitOptions, PkiReport};
pub use issue::{
    generate_ca, issue_client_with_validity, issue_instance_pair, issue_server_with_validity,
    CertAndKey, MAX_VALIDITY_DAYS,
};
pub use layout::{
    client_crt_file, client_key_file, CA_CRT, CA_KEY, DEFAULT_CLIENT_NAME, DEFAULT_PKI_DIR,
    DEFAULT_SERVER_NAME, DEFAULT_SOCKET, DEFAULT_VALIDITY_DAYS, SERVER_CRT, SERVER_KEY,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
