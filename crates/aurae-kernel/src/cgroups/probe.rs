//! A cgroup's files kept open for the checks at the end of every run it
//! hosts (anything left in it? did the OOM killer strike?), so that each
//! check is one read instead of a path walk, an open and a close per file.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::fs::{parse_counter, parse_procs};
use super::CgroupError;

#[derive(Debug)]
pub struct CgroupProbe {
    /// The cgroup's directory in the hierarchy that tracks its processes.
    dir: File,
    /// Its `cgroup.procs` there.
    procs: File,
    procs_path: PathBuf,
    /// v1 `memory.oom_control`, v2 `memory.events`; none without a memory controller.
    oom: Option<(File, PathBuf)>,
}

impl CgroupProbe {
    /// Opens `dir`, its `cgroup.procs` and `oom` (when given and present).
    pub fn open(dir: &Path, oom: Option<PathBuf>) -> Result<Self, CgroupError> {
        let procs_path = dir.join("cgroup.procs");
        let open = |p: &Path| {
            File::open(p).map_err(|source| CgroupError::Io {
                op: "open",
                path: p.to_path_buf(),
                source,
            })
        };
        let oom = match oom {
            Some(p) => match File::open(&p) {
                Ok(f) => Some((f, p)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(CgroupError::Io {
                        op: "open",
                        path: p,
                        source,
                    })
                }
            },
            None => None,
        };
        Ok(Self {
            dir: open(dir)?,
            procs: open(&procs_path)?,
            procs_path,
            oom,
        })
    }

    /// The pids in the cgroup, or `None` when it has cgroups below it (a
    /// link count above 2), whose processes only a walk of the tree finds.
    pub fn leaf_pids(&self) -> Result<Option<Vec<i32>>, CgroupError> {
        let meta = self.dir.metadata().map_err(|source| CgroupError::Io {
            op: "stat",
            path: self.procs_path.clone(),
            source,
        })?;
        if meta.nlink() != 2 {
            return Ok(None);
        }
        let content = read_all_at(&self.procs, &self.procs_path)?;
        parse_procs(&self.procs_path, &content).map(Some)
    }

    /// How many processes of the cgroup the OOM killer killed (0 without a
    /// memory controller).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match &self.oom {
            Some((file, path)) => parse_counter(path, &read_all_at(file, path)?, "oom_kill"),
            None => Ok(0),
        }
    }
}

/// The whole of a small interface file, read from its start (cgroupfs
/// files restart at offset 0, so the same open file serves every read).
fn read_all_at(file: &File, path: &Path) -> Result<String, CgroupError> {
    let mut content = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match file.read_at(&mut chunk, content.len() as u64) {
            Ok(0) => break,
            Ok(n) => content.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    String::from_utf8(content).map_err(|e| CgroupError::Parse {
        path: path.to_path_buf(),
        content: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_answers_its_pids_and_counter_on_every_read() {
        let root = tempfile::TempDir::new().expect("tempdir");
        let dir = root.path().join("a");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("cgroup.procs"), "3\n4\n").expect("write");
        let oom = dir.join("memory.events");
        std::fs::write(&oom, "oom 1\noom_kill 2\n").expect("write");
        let probe = CgroupProbe::open(&dir, Some(oom.clone())).expect("open");
        assert_eq!(probe.leaf_pids().expect("pids"), Some(vec![3, 4]));
        assert_eq!(probe.oom_kills().expect("oom"), 2);
        // The same open files see later contents.
        std::fs::write(dir.join("cgroup.procs"), "").expect("write");
        std::fs::write(&oom, "oom 1\noom_kill 5\n").expect("write");
        assert_eq!(probe.leaf_pids().expect("pids"), Some(vec![]));
        assert_eq!(probe.oom_kills().expect("oom"), 5);
        // A cgroup below it: only a walk of the tree knows its processes.
        std::fs::create_dir(dir.join("b")).expect("mkdir");
        assert_eq!(probe.leaf_pids().expect("pids"), None);
    }

    #[test]
    fn no_memory_controller_no_oom_kills() {
        let root = tempfile::TempDir::new().expect("tempdir");
        std::fs::write(root.path().join("cgroup.procs"), "").expect("write");
        let probe =
            CgroupProbe::open(root.path(), Some(root.path().join("memory.events"))).expect("open");
        assert_eq!(probe.oom_kills().expect("oom"), 0);
    }
}
