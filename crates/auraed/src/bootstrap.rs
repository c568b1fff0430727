//! `--bootstrap`: a working default setup on a fresh machine. Creates what is
//! missing of the PKI, the client config and the default CNI network, and
//! never overwrites anything.

use std::path::PathBuf;

use thiserror::Error;

use crate::cni::{self, CniError};
use crate::config::DaemonConfig;
use crate::pki::{self, PkiError, PkiInitOptions};

#[derive(Debug, Error)]
pub enum BootstrapError {
    #[error("bootstrapping the PKI")]
    Pki(#[from] PkiError),
    #[error("writing the default CNI network")]
    Network(#[source] Box<CniError>),
}

/// The home of the user who will run `aer`: under sudo that is the invoking user.
fn client_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

pub fn bootstrap(config: &DaemonConfig) -> Result<(), BootstrapError> {
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
    match cni::write_default(&config.cni_conf_dir)
        .map_err(|e| BootstrapError::Network(Box::new(e)))?
    {
        Some(path) => {
            tracing::info!(path = %path.display(), bridge = cni::DEFAULT_BRIDGE, subnet = cni::DEFAULT_SUBNET, "bootstrap: created the default CNI network")
        }
        None => {
            tracing::info!(dir = %config.cni_conf_dir.display(), "bootstrap: a CNI network is configured already")
        }
    }
    Ok(())
}
