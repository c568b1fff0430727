//! The Unix socket: parent directory created, a stale socket replaced only
//! when no daemon answers on it, mode 0600 (0660 with a group).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

use super::ServerError;

pub fn bind_unix(
    path: &Path,
    group: Option<nix::unistd::Gid>,
) -> Result<UnixListener, ServerError> {
    let err = |what: &'static str| {
        let p = path.display().to_string();
        move |source| ServerError::Socket {
            what,
            path: p,
            source,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(err("creating the directory of"))?;
    }
    if path.exists() {
        if answers_steadily(path) {
            return Err(ServerError::SocketInUse {
                path: path.display().to_string(),
            });
        }
        std::fs::remove_file(path).map_err(err("removing the stale socket"))?;
        tracing::info!(socket = %path.display(), "replaced a stale socket that no daemon answered on");
    }
    // The socket must never exist with looser permissions, even for a moment:
    // bind under a strict umask, then widen to 0660 only when a group is given.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(err("binding"))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| err("setting the group of")(std::io::Error::from(e)))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(err("setting the mode of"))?;
    }
    Ok(listener)
}

/// Whether a daemon listens on `path`. A child forked by a daemon that just
/// crashed holds the listening socket until it execs, so connections are
/// queued for a moment even though nobody will ever accept them: only a
/// socket that keeps accepting connections for a while counts as live.
fn answers_steadily(path: &Path) -> bool {
    const PROBES: u32 = 10;
    for i in 0..PROBES {
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            return false;
        }
        if i + 1 < PROBES {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    true
}
