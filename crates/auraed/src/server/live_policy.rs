//! The authorization policy in force, and its reload on SIGHUP. A reload
//! that fails (unreadable file, syntax, a name the daemon does not serve)
//! keeps the policy in force and says why: a typo never opens or closes
//! the node by accident.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aurae_policy::{Policy, PolicyError};
use tokio_util::sync::CancellationToken;

pub struct LivePolicy {
    path: PathBuf,
    /// The file may be absent (the default path): then everything is allowed.
    optional: bool,
    current: RwLock<Arc<Policy>>,
}

impl LivePolicy {
    /// Loads the policy at start; any error stops the daemon.
    pub fn load(path: &Path, optional: bool) -> Result<Self, PolicyError> {
        let policy = if optional && !path.exists() {
            tracing::warn!(
                policy = %path.display(),
                "no authorization policy: every client certificate signed by the CA may call every method"
            );
            Policy::AllowAll
        } else {
            let p = Policy::load(path)?;
            tracing::info!(policy = %path.display(), "authorization policy loaded");
            p
        };
        Ok(Self {
            path: path.to_path_buf(),
            optional,
            current: RwLock::new(Arc::new(policy)),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the file again; on any error the policy in force stays.
    pub fn reload(&self) {
        let path = self.path.display();
        if !self.path.exists() {
            if self.optional && matches!(*self.current(), Policy::AllowAll) {
                tracing::info!(policy = %path, "reload: still no authorization policy");
            } else {
                tracing::error!(policy = %path,
                    "reload: the authorization policy is missing: keeping the policy in force (restart the daemon to run without one)");
            }
            return;
        }
        match Policy::load(&self.path) {
            Ok(p) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
                tracing::info!(policy = %path, "authorization policy reloaded");
            }
            Err(e) => {
                tracing::error!(policy = %path, error = %e.lines().join("; "),
                    "reload: the authorization policy is invalid: keeping the policy in force");
            }
        }
    }
}

/// Reloads `live` on every SIGHUP until `shutdown`.
pub async fn reload_on_sighup(live: Arc<LivePolicy>, shutdown: CancellationToken) {
    use tokio::signal::unix::SignalKind;
    let mut hup = match crate::process::listen_for_signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no policy reload on SIGHUP");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: reloading the authorization policy");
                live.reload();
            }
        }
    }
}
