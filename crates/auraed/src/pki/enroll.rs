//! `issue_client`: a further client identity from an existing CA directory,
//! e.g. a second operator or a test client.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::error::PkiError;
use super::files::{self, PUBLIC, SECRET};
use super::issue::Ca;
use super::layout::{client_crt_file, client_key_file, CA_CRT, CA_KEY};

/// Where `issue_client` put a client identity: the three paths of a client
/// config's `[auth]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    pub ca_crt: PathBuf,
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
}

/// Issues a certificate for client `name`, valid for `days`, from the CA in
/// `ca_dir` (`ca.crt`, `ca.key`) into `out_dir` (`_signed.client.<name>.crt`,
/// `client.<name>.key` with mode 0600, and a copy of `ca.crt` when missing).
/// Refuses to overwrite an existing certificate or key of that name.
pub fn issue_client(
    ca_dir: &Path,
    out_dir: &Path,
    name: &str,
    days: u32,
) -> Result<ClientFiles, PkiError> {
    let ca_crt = ca_dir.join(CA_CRT);
    let ca = Ca::from_pem(
        &files::read(&ca_crt)?,
        &files::read(&ca_dir.join(CA_KEY))?,
        &ca_crt.display().to_string(),
    )?;
    let (not_before, not_after) = ca.leaf_validity(OffsetDateTime::now_utc(), days)?;
    // Validates `name` before anything touches the disk.
    let issued = ca.issue_client(name, not_before, not_after)?;

    files::ensure_dir(out_dir)?;
    let out = ClientFiles {
        ca_crt: out_dir.join(CA_CRT),
        client_crt: out_dir.join(client_crt_file(name)),
        client_key: out_dir.join(client_key_file(name)),
    };
    for path in [&out.client_crt, &out.client_key] {
        if files::exists(path) {
            return Err(PkiError::AlreadyExists { path: path.clone() });
        }
    }
    files::write_new(&out.client_key, &issued.key_pem, SECRET)?;
    files::write_new(&out.client_crt, &issued.cert_pem, PUBLIC)?;
    if !files::exists(&out.ca_crt) {
        files::write_new(&out.ca_crt, &ca.pem.cert_pem, PUBLIC)?;
    }
    Ok(out)
}
