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

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The marker as stored. The message is left out when it is the usual
/// sentence of its exit: the usual marker (`{"ended_at":..,"code":0}`, 41
/// bytes) then fits in the inode's own xattr space on ext4 (about 60 bytes
/// with 256-byte inodes), where the full one took a block of its own.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    ended_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    message: Option<std::borrow::Cow<'a, str>>,
}

/// How an exit reads for people: `exited with code 3` or `killed by signal
/// 9 (SIGKILL)`; `None` when neither is known.
pub fn describe_exit(code: Option<i32>, signal: Option<i32>) -> Option<String> {
    match (code, signal) {
        (Some(c), _) => Some(format!("exited with code {c}")),
        (None, Some(s)) => {
            let name = nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            Some(format!("killed by signal {s} ({name})"))
        }
        (None, None) => None,
    }
}

impl EndMarker {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let usual = describe_exit(self.code, self.signal).is_some_and(|m| m == self.message);
        let stored = Stored {
            ended_at: self.ended_at,
            code: self.code,
            signal: self.signal,
            message: (!usual).then_some(self.message.as_str().into()),
        };
        serde_json::to_vec(&stored).map_err(io::Error::other)
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        let message = match stored.message {
            Some(m) => m.into_owned(),
            None => describe_exit(stored.code, stored.signal).unwrap_or_default(),
        };
        Some(Self {
            ended_at: stored.ended_at,
            code: stored.code,
            signal: stored.signal,
            message,
        })
    }

    /// Writes the marker at once: an xattr is set whole; the fallback file
    /// in one `write`, so a reader sees it whole or not at all (an empty or
    /// unparsable file reads as "not ended yet").
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let bytes = self.encode()?;
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
        Self::decode(&bytes)
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
                assert_eq!(
                    bytes, br#"{"ended_at":7,"signal":9}"#,
                    "the usual message is left out"
                );
                assert_eq!(EndMarker::decode(&bytes), Some(m.clone()));
            }
            // A file system without user xattrs: the file holds it.
            None => assert!(dir.path().join(END_FILE).is_file()),
        }
        assert_eq!(EndMarker::read(dir.path()), Some(m));
    }

    #[test]
    fn the_usual_marker_fits_in_an_ext4_inode_and_old_markers_still_read() {
        let m = EndMarker {
            ended_at: 1_764_645_000_123_456_789,
            code: Some(0),
            signal: None,
            message: "exited with code 0".into(),
        };
        let bytes = m.encode().expect("encode");
        assert!(bytes.len() <= 60, "{} bytes", bytes.len());
        assert_eq!(EndMarker::decode(&bytes), Some(m));
        let unusual = EndMarker {
            ended_at: 1,
            code: None,
            signal: None,
            message: "its exit status is unknown".into(),
        };
        assert_eq!(
            EndMarker::decode(&unusual.encode().expect("encode")),
            Some(unusual)
        );
        // As written before the message could be left out.
        let old = br#"{"ended_at":5,"code":3,"signal":null,"message":"exited with code 3"}"#;
        assert_eq!(
            EndMarker::decode(old).map(|m| (m.code, m.message)),
            Some((Some(3), "exited with code 3".to_string()))
        );
    }
}
