//! The end marker of a workload's log: written once the log is complete
//! (the workload exited and its output is drained), with how it ended.
//! Followers stop when they have read the log to its end and it exists.
//!
//! It is an extended attribute of the log directory (`user.aurae.end`), so
//! finishing a run allocates no inode: on ext4 without a journal an inode
//! allocation scans past every recently deleted inode of its group, and the
//! `end` file was a tenth of the daemon's CPU per RunExecutable. Where the
//! file system has no user xattrs (tmpfs before Linux 6.6) it is the file
//! `end` in the directory instead; readers look at both.

use std::io::{self, Write};
use std::path::Path;

use crate::xattr;

use serde::{Deserialize, Serialize};

/// File name of the marker inside a workload's log directory, where the
/// directory cannot carry [`END_XATTR`].
pub const END_FILE: &str = "end";

/// Extended attribute of the log directory that holds the marker.
pub const END_XATTR: &str = "user.aurae.end";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndMarker {
    /// Unix time in nanoseconds.
    pub ended_at: i64,
    /// Exit code, when the process exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// How it ended, for people: e.g. `exited with code 3`, or why it is unknown.
    pub message: String,
}

impl EndMarker {
    /// Writes the marker at once: an xattr is set whole; the fallback file
    /// in one `write`, so a reader sees it whole or not at all (an empty or
    /// unparsable file reads as "not ended yet").
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        match xattr::lset(dir, END_XATTR, &bytes) {
            Ok(()) => Ok(()),
            Err(e) if unsupported(&e) => {
                let mut f = std::fs::File::create(dir.join(END_FILE))?;
                f.write_all(&bytes)
            }
            Err(e) => Err(e),
        }
    }

    /// The marker of `dir`, if the log is complete.
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = match xattr::lget(dir, END_XATTR) {
            Ok(Some(bytes)) => bytes,
            _ => std::fs::read(dir.join(END_FILE)).ok()?,
        };
        serde_json::from_slice(&bytes).ok()
    }
}

/// The file system (or the kernel) cannot set user xattrs on `dir`.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTSUP) | Some(libc::EPERM) | Some(libc::ENOSYS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(EndMarker::read(dir.path()), None);
        std::fs::write(dir.path().join(END_FILE), b"").expect("write");
        assert_eq!(
            EndMarker::read(dir.path()),
            None,
            "an empty file is not an end"
        );
        let m = EndMarker {
            ended_at: 5,
            code: Some(3),
            signal: None,
            message: "exited with code 3".into(),
        };
        m.write(dir.path()).expect("write");
        assert_eq!(EndMarker::read(dir.path()), Some(m));
    }

    #[test]
    fn the_marker_is_an_xattr_where_the_file_system_has_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = EndMarker {
            ended_at: 7,
            code: None,
            signal: Some(9),
            message: "killed by signal 9 (SIGKILL)".into(),
        };
        m.write(dir.path()).expect("write");
        let attr = xattr::lget(dir.path(), END_XATTR).expect("getxattr");
        match attr {
            Some(bytes) => {
                assert!(!dir.path().join(END_FILE).exists(), "no inode for the end");
                let back: EndMarker = serde_json::from_slice(&bytes).expect("json");
                assert_eq!(back, m);
            }
            // A file system without user xattrs: the file holds it.
            None => assert!(dir.path().join(END_FILE).is_file()),
        }
        assert_eq!(EndMarker::read(dir.path()), Some(m));
    }
}
