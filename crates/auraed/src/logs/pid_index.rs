//! Which log belongs to a pid: an in-memory map, persisted as one
//! append-only file of `<pid> <log directory name>` lines (the last line of
//! a pid wins), compacted at open and whenever most lines are stale.
//!
//! Why not a symlink per pid: creating an inode per run was the largest
//! cost of a RunExecutable on ext4 (inode allocation scans past recently
//! deleted inodes); one append is a write to an open file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The index file, under the log store's root.
pub(super) const INDEX_FILE: &str = "pids.index";
/// The older layout: one symlink per pid, imported once at open.
const LEGACY_DIR: &str = "pids";
/// Lines appended before a compaction is considered.
const COMPACT_SLACK: usize = 4096;

pub(super) struct PidIndex {
    path: PathBuf,
    file: File,
    /// pid -> log directory name (under `workloads/`).
    by_pid: HashMap<i32, Box<str>>,
    /// log directory name -> the pid indexed to it.
    by_dir: HashMap<Box<str>, i32>,
    /// Lines in the file.
    lines: usize,
}

impl PidIndex {
    /// Loads the index of the store at `root`, keeping only entries whose
    /// log directory `exists`, and rewrites it compacted.
    pub fn open(root: &Path, exists: impl Fn(&str) -> bool) -> io::Result<Self> {
        let path = root.join(INDEX_FILE);
        let mut by_pid: HashMap<i32, Box<str>> = HashMap::new();
        for (pid, dir) in legacy_links(&root.join(LEGACY_DIR)) {
            by_pid.insert(pid, dir);
        }
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    let Some((pid, dir)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Ok(pid) = pid.parse::<i32>() {
                        by_pid.insert(pid, dir.into());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        by_pid.retain(|_, dir| exists(dir));
        let by_dir = by_pid.iter().map(|(p, d)| (d.clone(), *p)).collect();
        let mut index = Self {
            file: write_all(&path, &by_pid)?,
            lines: by_pid.len(),
            path,
            by_pid,
            by_dir,
        };
        index.file.flush()?;
        // Imported: the links are not needed any more.
        let _ = std::fs::remove_dir_all(root.join(LEGACY_DIR));
        Ok(index)
    }

    /// Records that `pid` writes to the log directory named `dir`.
    pub fn link(&mut self, pid: i32, dir: &str) -> io::Result<()> {
        if let Some(old) = self.by_pid.insert(pid, dir.into()) {
            if self.by_dir.get(&old) == Some(&pid) {
                self.by_dir.remove(&old);
            }
        }
        self.by_dir.insert(dir.into(), pid);
        self.file.write_all(format!("{pid} {dir}\n").as_bytes())?;
        self.lines += 1;
        if self.lines > 2 * self.by_pid.len() + COMPACT_SLACK {
            self.compact()?;
        }
        Ok(())
    }

    /// The log directory name of the newest workload that had `pid`.
    pub fn get(&self, pid: i32) -> Option<&str> {
        self.by_pid.get(&pid).map(|d| &**d)
    }

    /// Forgets the log directory named `dir` (it was removed).
    pub fn forget(&mut self, dir: &str) {
        if let Some(pid) = self.by_dir.remove(dir) {
            if self.by_pid.get(&pid).is_some_and(|d| &**d == dir) {
                self.by_pid.remove(&pid);
            }
        }
    }

    fn compact(&mut self) -> io::Result<()> {
        self.file = write_all(&self.path, &self.by_pid)?;
        self.lines = self.by_pid.len();
        Ok(())
    }
}

/// Writes `entries` to a new file that replaces `path` in one rename, and
/// returns it open for appending.
fn write_all(path: &Path, entries: &HashMap<i32, Box<str>>) -> io::Result<File> {
    let tmp = path.with_extension("index.new");
    let mut text = String::new();
    for (pid, dir) in entries {
        text.push_str(&format!("{pid} {dir}\n"));
    }
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).open(path)
}

/// `(pid, directory name)` of each link of the older layout.
fn legacy_links(dir: &Path) -> Vec<(i32, Box<str>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            let name = target.file_name()?.to_str()?.into();
            Some((pid, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_link_wins_and_survives_reopen_and_compaction() {
        let root = tempfile::tempdir().expect("tempdir");
        let all = |_: &str| true;
        let mut index = PidIndex::open(root.path(), all).expect("open");
        index.link(7, "exec.a.1").expect("link");
        index.link(7, "exec.b.2").expect("relink");
        index.link(8, "exec.c.3").expect("link");
        assert_eq!(index.get(7), Some("exec.b.2"));
        index.forget("exec.a.1");
        assert_eq!(index.get(7), Some("exec.b.2"), "an older dir of 7");
        index.forget("exec.c.3");
        assert_eq!(index.get(8), None);
        drop(index);
        let index = PidIndex::open(root.path(), |d| d != "exec.c.3").expect("reopen");
        assert_eq!(index.get(7), Some("exec.b.2"));
        assert_eq!(index.get(8), None, "its log is gone");
        let text = std::fs::read_to_string(root.path().join(INDEX_FILE)).expect("read");
        assert_eq!(text, "7 exec.b.2\n", "compacted at open");

        let mut index = index;
        for i in 0..(3 * COMPACT_SLACK) {
            index.link(9, &format!("exec.x.{i}")).expect("link");
        }
        let lines = std::fs::read_to_string(root.path().join(INDEX_FILE))
            .expect("read")
            .lines()
            .count();
        assert!(
            lines <= COMPACT_SLACK + 3,
            "compacted while running: {lines}"
        );
    }

    #[test]
    fn symlinks_of_the_older_layout_are_imported_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let legacy = root.path().join(LEGACY_DIR);
        std::fs::create_dir(&legacy).expect("mkdir");
        std::os::unix::fs::symlink("../workloads/exec.-.5", legacy.join("42")).expect("link");
        let index = PidIndex::open(root.path(), |_| true).expect("open");
        assert_eq!(index.get(42), Some("exec.-.5"));
        assert!(!legacy.exists());
        drop(index);
        let index = PidIndex::open(root.path(), |_| true).expect("reopen");
        assert_eq!(index.get(42), Some("exec.-.5"));
    }
}
