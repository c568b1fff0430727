//! The `end` file of a workload's log: written once the log is complete
//! (the workload exited and its output is drained), with how it ended.
//! Followers stop when they have read the log to its end and this exists.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the marker inside a workload's log directory.
pub const END_FILE: &str = "end";

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
    /// Writes the marker in one `write`, so a reader sees it whole or not at all
    /// (an empty or unparsable file reads as "not ended yet").
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut f = std::fs::File::create(dir.join(END_FILE))?;
        f.write_all(&bytes)
    }

    /// The marker in `dir`, if the log is complete.
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(END_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
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
}
