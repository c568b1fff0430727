//! `--bootstrap`: a working default setup on a fresh machine. Creates what is
//! missing of the PKI and the client config, and never overwrites anything.

use std::path::PathBuf;

use crate::config::DaemonConfig;
use crate::pki::{self, PkiError, PkiInitOptions};

/// The home of the user who will run `aer`: under sudo that is the invoking user.
fn client_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

pub fn bootstrap(config: &DaemonConfig) -> Result<(), PkiError> {
    let server_dir = config
        .ca_crt
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/aurae/pki"));
    let home = client_home();
    let opts = PkiInitOptions {
        pki_dir: server_dir,
        client_dir: home.join(".aurae/pki"),
        client_name: config.bootstrap_client.clone(),
        config_path: home.join(".aurae/config"),
        socket: config.socket.clone(),
        force: false,
        validity_days: pki::DEFAULT_VALIDITY_DAYS,
    };
    let report = pki::init(&opts)?;
    for path in report.written() {
        tracing::info!(path = %path.display(), "bootstrap: created");
    }
    for warning in &report.warnings {
        tracing::warn!("bootstrap: {warning}");
    }
    tracing::info!(config = %opts.config_path.display(), "bootstrap: PKI and client config ready");
    Ok(())
}
