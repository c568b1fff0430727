//! The open-file limit. The soft limit most service managers start a daemon
//! with (1024) is far below what a server with a TCP listener needs; the hard
//! limit is what the administrator allows, so the daemon takes all of it,
//! as nginx, containerd and systemd-managed servers do.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft RLIMIT_NOFILE to the hard limit and logs the change.
pub fn raise_nofile_limit() {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "reading the open-file limit");
            return;
        }
    };
    if soft >= hard {
        tracing::info!(limit = soft, "open-file limit");
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => tracing::info!(
            from = soft,
            to = hard,
            "raised the open-file limit to the hard limit"
        ),
        Err(e) => tracing::warn!(limit = soft, hard, error = %e, "raising the open-file limit"),
    }
}
