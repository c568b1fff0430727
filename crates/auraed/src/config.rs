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
    /// Seconds a new connection may take to complete its TLS handshake
    /// before it is closed (bounds what an unauthenticated client can hold).
    #[arg(long, env = "AURAED_HANDSHAKE_TIMEOUT", default_value_t = 5.0)]
    pub handshake_timeout: f64,
    /// Connections per listener that may be in their TLS handshake at once;
    /// more are closed as soon as they are accepted.
    #[arg(long, env = "AURAED_MAX_HANDSHAKES", default_value_t = 256)]
    pub max_handshakes: usize,
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
    /// Size at which a workload's log starts a new file (like kubelet's
    /// containerLogMaxSize): bytes, or with a K/M/G suffix (powers of 1024).
    #[arg(long, env = "AURAED_LOG_MAX_SIZE", default_value = "10M")]
    pub log_max_size: ByteSize,
    /// Files kept per workload log, the newest (like containerLogMaxFiles).
    #[arg(long, env = "AURAED_LOG_MAX_FILES", default_value_t = 5)]
    pub log_max_files: usize,
    /// Total size of the logs of finished workloads kept; the oldest go first.
    #[arg(long, env = "AURAED_LOG_RETENTION", default_value = "512M")]
    pub log_retention: ByteSize,
    /// At exit, also stop the scheduled executables (for a node being
    /// drained). Without it they keep running and the next auraed adopts them.
    #[arg(long, env = "AURAED_STOP_WORKLOADS_AT_EXIT")]
    pub stop_workloads_at_exit: bool,
    /// pids.max of every workload cgroup (RunExecutable, scheduled
    /// executables, each cell as a whole) unless its request sets
    /// limits.pids: a fork bomb stops there. 0 leaves it unlimited.
    #[arg(long, env = "AURAED_DEFAULT_PIDS_MAX", default_value_t = 4096)]
    pub default_pids_max: u64,
    /// Memory limit of every workload cgroup (each cell as a whole) unless
    /// its request sets limits.memory_bytes: bytes, or with a K/M/G suffix.
    /// Unset: unlimited.
    #[arg(long, env = "AURAED_DEFAULT_MEMORY_MAX")]
    pub default_memory_max: Option<ByteSize>,
    /// User (name or uid) workloads run as unless their request names one.
    /// Empty: root, as systemd services default to.
    #[arg(long, env = "AURAED_DEFAULT_USER", default_value = "")]
    pub default_user: String,
    /// CNI network configurations; the first file in name order is the
    /// cells' default network (--bootstrap writes one when there is none).
    #[arg(long, env = "AURAED_CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// Directories of the CNI plugins, separated by ':'.
    #[arg(
        long,
        env = "AURAED_CNI_BIN_DIR",
        default_value = "/usr/lib/cni:/opt/cni/bin"
    )]
    pub cni_bin_dir: String,
    /// Client identity created by --bootstrap.
    #[arg(long, env = "AURAED_BOOTSTRAP_CLIENT", default_value = "admin")]
    pub bootstrap_client: String,
    /// QEMU accelerator for VMs: auto (KVM only when the CPU shows vmx/svm,
    /// no paravirtual KVM module is loaded and /dev/kvm opens), kvm or tcg.
    #[arg(long, env = "AURAED_VM_ACCEL", default_value = "auto")]
    pub vm_accel: crate::vms::AccelChoice,
    /// Seconds a guest may take to power off after the ACPI power button
    /// (vms.Vms/Stop) before QEMU is told to quit.
    #[arg(long, env = "AURAED_VM_STOP_TIMEOUT", default_value_t = 30.0)]
    pub vm_stop_timeout: f64,
    /// The CA's private key, read at each Spawn/RunPod to issue the nested
    /// instance its server certificate (with --ca-crt).
    #[arg(long, env = "AURAED_CA_KEY", default_value = "/etc/aurae/pki/ca.key")]
    pub ca_key: PathBuf,
    /// Directory of the nested instances' image (vmlinux, initramfs.cpio)
    /// made by hack/build-instance-image.sh DIR.
    #[arg(long, env = "AURAED_INSTANCE_IMAGE_DIR")]
    #[arg(default_value = "/var/lib/aurae/instance")]
    pub instance_image_dir: PathBuf,
    /// IPv4 subnet of the nested instances: its first address is the
    /// bridge's (their gateway), the others go to instances.
    #[arg(long, env = "AURAED_INSTANCE_SUBNET", default_value = "10.92.0.0/24")]
    pub instance_subnet: crate::instances::Subnet,
    /// Linux bridge the daemon makes (when absent) for the instances' TAPs.
    #[arg(long, env = "AURAED_INSTANCE_BRIDGE", default_value = "aurae-inst0")]
    pub instance_bridge: String,
    /// Seconds a spawned instance may take until its auraed answers over
    /// mTLS (minutes under TCG).
    #[arg(long, env = "AURAED_INSTANCE_BOOT_TIMEOUT", default_value_t = 300.0)]
    pub instance_boot_timeout: f64,
    /// An OCI image layout whose images (named by their full reference) are
    /// taken from there instead of their registry: how a parent hands its
    /// images to a nested instance (docs/instances.md).
    #[arg(long, env = "AURAED_IMAGE_PRELOAD_DIR")]
    #[arg(default_value = "/var/lib/aurae/images-preload")]
    pub image_preload_dir: PathBuf,
}

impl DaemonConfig {
    /// `--cni-bin-dir` as a list of directories.
    pub fn cni_bin_dirs(&self) -> Vec<PathBuf> {
        std::env::split_paths(&self.cni_bin_dir)
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    }

    /// Whether the authorization policy path was left at its default.
    pub fn authz_policy_is_default(&self) -> bool {
        self.authz_policy == std::path::Path::new("/etc/aurae/authz.toml")
    }
}

/// A size in bytes, written as a number with an optional K, M or G suffix
/// (powers of 1024; `Ki`/`Mi`/`Gi` and a trailing `B` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match aurae_client::size::parse_size(s)? {
            0 => Err(format!(
                "{s:?} is out of range: give a size from 1 byte to 16 EiB"
            )),
            n => Ok(ByteSize(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_parse_like_kubelet_flags() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("10M"), Ok(10 << 20));
        assert_eq!(p("10Mi"), Ok(10 << 20));
        assert_eq!(p("512"), Ok(512));
        assert_eq!(p("1G"), Ok(1 << 30));
        assert_eq!(p("4KiB"), Ok(4096));
        assert!(p("0").is_err());
        assert!(p("ten").is_err());
        assert!(p("-1M").is_err());
    }
}
