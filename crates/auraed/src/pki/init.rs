//! `init`: bootstrap a node's PKI (CA, server certificate, a first client
//! identity and its config) without ever destroying material that exists,
//! unless asked to with `force`.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::client_config;
use super::error::PkiError;
use super::files::{self, PUBLIC, SECRET};
use super::issue::{validity, Ca, CertAndKey, MAX_VALIDITY_DAYS};
use super::layout::*;
use crate::validation::validate_name;

/// The CA outlives what it issues tenfold, so that a later `init` (a new
/// client, a renewed server certificate) can still issue from it.
const CA_LIFETIME_FACTOR: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiInitOptions {
    /// Server side: CA, server certificate and keys (default /etc/aurae/pki).
    pub pki_dir: PathBuf,
    /// Client side: CA copy, client certificate and key (default ~/.aurae/pki).
    pub client_dir: PathBuf,
    /// CN and DNS SAN of the client certificate, from [A-Za-z0-9._-] (default "admin").
    pub client_name: String,
    /// Client config file to write (default ~/.aurae/config).
    pub config_path: PathBuf,
    /// Daemon socket written into the client config (default /var/run/aurae/aurae.sock).
    pub socket: PathBuf,
    /// Replace existing material instead of keeping it.
    pub force: bool,
    /// Lifetime of the server and client certificates (the CA gets ten times as long).
    pub validity_days: u32,
}

impl PkiInitOptions {
    /// The defaults, with the client files under `home`.
    pub fn for_home(home: &Path) -> Self {
        Self {
            pki_dir: PathBuf::from(DEFAULT_PKI_DIR),
            client_dir: home.join(DEFAULT_CLIENT_DIR_IN_HOME),
            client_name: DEFAULT_CLIENT_NAME.to_string(),
            config_path: home.join(DEFAULT_CONFIG_IN_HOME),
            socket: PathBuf::from(DEFAULT_SOCKET),
            force: false,
            validity_days: DEFAULT_VALIDITY_DAYS,
        }
    }
}

impl Default for PkiInitOptions {
    /// The defaults for the current user. Without a home directory (a
    /// service started with no $HOME and no passwd entry) this is root's,
    /// the only user such a daemon normally runs as.
    fn default() -> Self {
        Self::for_home(&dirs::home_dir().unwrap_or_else(|| PathBuf::from("/root")))
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Replaced,
    /// It existed and `force` was not given.
    Kept,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFile {
    pub path: PathBuf,
    pub outcome: Outcome,
}

/// Every file `init` is responsible for, and what it did with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkiReport {
    pub files: Vec<PkiFile>,
    /// Problems that did not stop `init`, e.g. a kept certificate that the
    /// current CA did not issue.
    pub warnings: Vec<String>,
}

impl PkiReport {
    pub fn outcome(&self, path: &Path) -> Option<Outcome> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.outcome)
    }

    pub fn kept(&self) -> Vec<&Path> {
        self.with(|o| o == Outcome::Kept)
    }

    /// Created or replaced.
    pub fn written(&self) -> Vec<&Path> {
        self.with(|o| o != Outcome::Kept)
    }

    fn with(&self, pred: impl Fn(Outcome) -> bool) -> Vec<&Path> {
        self.files
            .iter()
            .filter(|f| pred(f.outcome))
            .map(|f| f.path.as_path())
            .collect()
    }
}

impl fmt::Display for PkiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let verb = match file.outcome {
                Outcome::Created => "created ",
                Outcome::Replaced => "replaced",
                Outcome::Kept => "kept    ",
            };
            writeln!(f, "{verb} {}", file.path.display())?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Creates what is missing of: the CA (`pki_dir/ca.crt`, `ca.key`), the
/// server certificate (`pki_dir/_signed.server.crt`, `server.key`), the
/// client identity (`client_dir/ca.crt`, `_signed.client.<name>.crt`,
/// `client.<name>.key`) and the client config. Existing files are kept (and
/// an existing CA issues the missing certificates) unless `opts.force`.
pub fn init(opts: &PkiInitOptions) -> Result<PkiReport, PkiError> {
    validate_name("client name", &opts.client_name).map_err(PkiError::InvalidClientName)?;
    let now = OffsetDateTime::now_utc();
    validity(now, opts.validity_days)?;
    files::ensure_dir(&opts.pki_dir)?;
    files::ensure_dir(&opts.client_dir)?;
    if let Some(parent) = opts
        .config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        files::ensure_dir(parent)?;
    }
    let mut w = Writer {
        force: opts.force,
        report: PkiReport::default(),
    };
    w.warn_if_open(&opts.pki_dir);
    w.warn_if_open(&opts.client_dir);

    let (ca_crt, ca_key) = (opts.pki_dir.join(CA_CRT), opts.pki_dir.join(CA_KEY));
    let ca = if w.keep_pair(&ca_crt, &ca_key)? {
        Ca::from_pem(
            &files::read(&ca_crt)?,
            &files::read(&ca_key)?,
            &ca_crt.display().to_string(),
        )?
    } else {
        let ca_days = opts
            .validity_days
            .saturating_mul(CA_LIFETIME_FACTOR)
            .min(MAX_VALIDITY_DAYS);
        let (not_before, not_after) = validity(now, ca_days)?;
        let ca = Ca::generate(not_before, not_after)?;
        w.write_pair(&ca_crt, &ca_key, &ca.pem)?;
        ca
    };

    let (server_crt, server_key) = (opts.pki_dir.join(SERVER_CRT), opts.pki_dir.join(SERVER_KEY));
    if w.keep_pair(&server_crt, &server_key)? {
        w.check_issued_by(&ca, &server_crt, &ca_crt)?;
    } else {
        let (not_before, not_after) = ca.leaf_validity(now, opts.validity_days)?;
        let server =
            ca.issue_server(&server_names(hostname().as_deref()), not_before, not_after)?;
        w.write_pair(&server_crt, &server_key, &server)?;
    }

    let name = &opts.client_name;
    let client_crt = opts.client_dir.join(client_crt_file(name));
    let client_key = opts.client_dir.join(client_key_file(name));
    if w.keep_pair(&client_crt, &client_key)? {
        w.check_issued_by(&ca, &client_crt, &ca_crt)?;
    } else {
        let (not_before, not_after) = ca.leaf_validity(now, opts.validity_days)?;
        let client = ca.issue_client(name, not_before, not_after)?;
        w.write_pair(&client_crt, &client_key, &client)?;
    }

    let client_ca = opts.client_dir.join(CA_CRT);
    if w.put(&client_ca, &ca.pem.cert_pem, PUBLIC)? == Outcome::Kept
        && files::read(&client_ca)? != ca.pem.cert_pem
    {
        w.report.warnings.push(format!(
            "{} differs from {}: clients will not trust this server",
            client_ca.display(),
            ca_crt.display()
        ));
    }

    // Absolute paths, so the config works from any working directory.
    let client_dir = std::fs::canonicalize(&opts.client_dir)
        .map_err(PkiError::io("resolve", &opts.client_dir))?;
    let config = client_config::render(
        &opts.config_path,
        &client_dir.join(CA_CRT),
        &client_dir.join(client_crt_file(name)),
        &client_dir.join(client_key_file(name)),
        &opts.socket,
    )?;
    w.put(&opts.config_path, &config, PUBLIC)?;
    Ok(w.report)
}

/// Writes files and records what it did.
struct Writer {
    force: bool,
    report: PkiReport,
}

impl Writer {
    /// True when a certificate and its key both exist and are to be kept.
    /// One without the other is an error: writing the missing half would
    /// pair it with a stranger, and replacing the existing half needs force.
    fn keep_pair(&mut self, crt: &Path, key: &Path) -> Result<bool, PkiError> {
        if self.force {
            return Ok(false);
        }
        match (files::exists(crt), files::exists(key)) {
            (true, true) => {
                self.record(crt, Outcome::Kept);
                self.record(key, Outcome::Kept);
                Ok(true)
            }
            (true, false) => Err(PkiError::IncompletePair {
                present: crt.into(),
                missing: key.into(),
            }),
            (false, true) => Err(PkiError::IncompletePair {
                present: key.into(),
                missing: crt.into(),
            }),
            (false, false) => Ok(false),
        }
    }

    /// Key first: a crash in between leaves an incomplete pair, which the
    /// next run reports instead of using a certificate without its key.
    fn write_pair(&mut self, crt: &Path, key: &Path, pem: &CertAndKey) -> Result<(), PkiError> {
        self.put(key, &pem.key_pem, SECRET)?;
        self.put(crt, &pem.cert_pem, PUBLIC)?;
        Ok(())
    }

    fn put(&mut self, path: &Path, contents: &str, mode: u32) -> Result<Outcome, PkiError> {
        let outcome = match (files::exists(path), self.force) {
            (true, false) => Outcome::Kept,
            (true, true) => {
                files::replace(path, contents, mode)?;
                Outcome::Replaced
            }
            (false, _) => {
                files::write_new(path, contents, mode)?;
                Outcome::Created
            }
        };
        self.record(path, outcome);
        Ok(outcome)
    }

    fn record(&mut self, path: &Path, outcome: Outcome) {
        self.report.files.push(PkiFile {
            path: path.to_path_buf(),
            outcome,
        });
    }

    fn check_issued_by(&mut self, ca: &Ca, crt: &Path, ca_crt: &Path) -> Result<(), PkiError> {
        if !ca.signed(&files::read(crt)?) {
            self.report.warnings.push(format!(
                "{} was not issued by {}: peers will reject it (rerun with force to replace it)",
                crt.display(),
                ca_crt.display()
            ));
        }
        Ok(())
    }

    fn warn_if_open(&mut self, dir: &Path) {
        if let Ok(meta) = std::fs::metadata(dir) {
            if meta.permissions().mode() & 0o077 != 0 {
                self.report.warnings.push(format!(
                    "{} holds private keys but others may access it (chmod 700 it)",
                    dir.display()
                ));
            }
        }
    }
}

/// Names in the server certificate: what clients verify by default, the
/// names a local client may use, and the host name for remote ones.
fn server_names(hostname: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = [DEFAULT_SERVER_NAME, "localhost", "auraed"]
        .map(String::from)
        .to_vec();
    if let Some(h) = hostname {
        let plausible = !h.is_empty()
            && h.len() <= 253
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if plausible && !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.to_string());
        }
    }
    names.extend(["127.0.0.1", "::1"].map(String::from));
    names
}

fn hostname() -> Option<String> {
    nix::unistd::gethostname().ok()?.into_string().ok()
}
