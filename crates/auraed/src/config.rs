//! The daemon's settings: each flag also has an environment variable; the
//! defaults are those of the original Aurae (shared/spec/wire.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct DaemonConfig {
    /// Unix socket to serve on.
    #[arg(
        long,
        env = "AURAED_SOCKET",
        default_value = "/var/run/aurae/aurae.sock"
    )]
    pub socket: PathBuf,
    /// Group that may use the socket (mode 0660); without it the socket is 0600.
    #[arg(long, env = "AURAED_SOCKET_GROUP")]
    pub socket_group: Option<String>,
    /// Also serve on this TCP address (mutual TLS as on the socket), e.g. 127.0.0.1:8080.
    #[arg(long, env = "AURAED_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// CA certificate that every client certificate must chain to.
    #[arg(long, env = "AURAED_CA_CRT", default_value = "/etc/aurae/pki/ca.crt")]
    pub ca_crt: PathBuf,
    /// Server certificate (PEM).
    #[arg(
        long,
        env = "AURAED_SERVER_CRT",
        default_value = "/etc/aurae/pki/_signed.server.crt"
    )]
    pub server_crt: PathBuf,
    /// Server private key (PEM).
    #[arg(
        long,
        env = "AURAED_SERVER_KEY",
        default_value = "/etc/aurae/pki/server.key"
    )]
    pub server_key: PathBuf,
    /// Authorization policy (TOML). When the default file is absent every CA-signed client may call everything.
    #[arg(
        long,
        env = "AURAED_AUTHZ_POLICY",
        default_value = "/etc/aurae/authz.toml"
    )]
    pub authz_policy: PathBuf,
    /// Registries configuration (TOML: insecure registries, auth file); absent means defaults.
    #[arg(
        long,
        env = "AURAED_REGISTRIES",
        default_value = "/etc/aurae/registries.toml"
    )]
    pub registries: PathBuf,
    /// Persistent state (the schedule database, image store).
    #[arg(long, env = "AURAED_STATE_DIR", default_value = "/var/lib/aurae")]
    pub state_dir: PathBuf,
    /// Volatile state (bundles, per-boot files).
    #[arg(long, env = "AURAED_RUNTIME_DIR", default_value = "/var/run/aurae")]
    pub runtime_dir: PathBuf,
    /// Instance name reported by Status (default: the host name).
    #[arg(long, env = "AURAED_NAME")]
    pub name: Option<String>,
    /// Top cgroup under which every workload cgroup is created.
    #[arg(long, env = "AURAED_CGROUP_ROOT", default_value = "aurae")]
    pub cgroup_root: String,
    /// Seconds between SIGTERM and SIGKILL when a workload is stopped.
    #[arg(long, env = "AURAED_STOP_GRACE", default_value_t = 10.0)]
    pub stop_grace: f64,
    /// Create the PKI (CA, server and client certificates) and the client config when absent.
    #[arg(long, env = "AURAED_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Client identity created by --bootstrap.
    #[arg(long, env = "AURAED_BOOTSTRAP_CLIENT", default_value = "admin")]
    pub bootstrap_client: String,
}

impl DaemonConfig {
    /// Whether the authorization policy path was left at its default.
    pub fn authz_policy_is_default(&self) -> bool {
        self.authz_policy == std::path::Path::new("/etc/aurae/authz.toml")
    }
}
