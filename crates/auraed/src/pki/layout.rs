//! Where PKI material lives and what it is called. The names are those of the
//! original Aurae (shared/spec/wire.md), so existing setups keep working.

/// Server-side PKI directory: CA, server certificate and their keys.
pub const DEFAULT_PKI_DIR: &str = "/etc/aurae/pki";
/// Client PKI directory, relative to the user's home.
pub const DEFAULT_CLIENT_DIR_IN_HOME: &str = ".aurae/pki";
/// Client config file, relative to the user's home.
pub const DEFAULT_CONFIG_IN_HOME: &str = ".aurae/config";
/// Daemon socket written into the client config.
pub const DEFAULT_SOCKET: &str = "/var/run/aurae/aurae.sock";
/// Name of the first client identity.
pub const DEFAULT_CLIENT_NAME: &str = "admin";
/// Name clients verify in the server certificate unless told otherwise.
pub const DEFAULT_SERVER_NAME: &str = "server.unsafe.aurae.io";
/// Lifetime of server and client certificates.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CRT: &str = "_signed.server.crt";
pub const SERVER_KEY: &str = "server.key";

/// File name of the certificate of client `name`.
pub fn client_crt_file(name: &str) -> String {
    format!("_signed.client.{name}.crt")
}

/// File name of the private key of client `name`.
pub fn client_key_file(name: &str) -> String {
    format!("client.{name}.key")
}
