//! What the parent gives each instance, from its CA: a server certificate
//! naming the instance (DNS) and its address (IP) with a key of its own,
//! carried into the guest only inside the per-instance initramfs (next to
//! the CA certificate the guest trusts clients by); and a client identity
//! of the parent's for its own calls to the instance. Never the parent's
//! keys.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::cpio::{write_instance_initramfs, InstancePki};
use super::error::InstanceError;
use crate::pki::{self, DEFAULT_VALIDITY_DAYS};

/// Name of the parent's client identity in the certificates it issues.
pub const PARENT_CLIENT: &str = "aurae-parent";

/// The CA as read at a Spawn.
pub struct CaFiles {
    pub cert_pem: String,
    pub key_pem: String,
    key_path: PathBuf,
}

impl CaFiles {
    pub fn read(ca_crt: &Path, ca_key: &Path) -> Result<Self, InstanceError> {
        let key_pem = std::fs::read_to_string(ca_key).map_err(|source| InstanceError::NoCaKey {
            path: ca_key.to_path_buf(),
            source,
        })?;
        let cert_pem =
            std::fs::read_to_string(ca_crt).map_err(|source| InstanceError::NoCaCrt {
                path: ca_crt.to_path_buf(),
                source,
            })?;
        Ok(Self {
            cert_pem,
            key_pem,
            key_path: ca_key.to_path_buf(),
        })
    }
}

/// An instance's files in its state directory.
#[derive(Debug, Clone)]
pub struct InstanceFiles {
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
    pub initramfs: PathBuf,
}

impl InstanceFiles {
    pub fn of(dir: &Path) -> Self {
        Self {
            client_crt: dir.join("parent-client.crt"),
            client_key: dir.join("parent-client.key"),
            initramfs: dir.join("initramfs.cpio"),
        }
    }
}

/// Issues the instance's certificates and writes its directory (0700):
/// the parent's client identity and the per-instance initramfs (the
/// image's `base` with the guest's PKI appended).
pub async fn provision(
    ca: &CaFiles,
    name: &str,
    address: Ipv4Addr,
    dir: &Path,
    base: &Path,
) -> Result<InstanceFiles, InstanceError> {
    let names = vec![name.to_string(), address.to_string()];
    let (server, client) = pki::issue_instance_pair(
        &ca.cert_pem,
        &ca.key_pem,
        &ca.key_path.display().to_string(),
        &names,
        PARENT_CLIENT,
        DEFAULT_VALIDITY_DAYS,
    )
    .map_err(|source| InstanceError::Pki {
        name: name.to_string(),
        source,
    })?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| InstanceError::io(format!("creating {}", dir.display()), e))?;
    let files = InstanceFiles::of(dir);
    write_private(&files.client_crt, client.cert_pem.as_bytes())?;
    write_private(&files.client_key, client.key_pem.as_bytes())?;
    let (base, out, ca_pem) = (
        base.to_path_buf(),
        files.initramfs.clone(),
        ca.cert_pem.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let pki = InstancePki {
            ca_crt: ca_pem.as_bytes(),
            server_crt: server.cert_pem.as_bytes(),
            server_key: server.key_pem.as_bytes(),
        };
        write_instance_initramfs(&base, &pki, &out)
    })
    .await
    .map_err(|e| InstanceError::io("instance task", std::io::Error::other(e)))??;
    Ok(files)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), InstanceError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| InstanceError::io(format!("writing {}", path.display()), e))
}
