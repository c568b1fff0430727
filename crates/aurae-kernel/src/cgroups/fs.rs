//! Reading, writing and walking cgroupfs directories, shared by both drivers.
//!
//! Writes never create files: every interface file of a real cgroup exists
//! from its mkdir on, so a missing one is reported, not papered over.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::CgroupError;

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to an existing interface file in one write(2), as cgroupfs expects.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.write_all(value.as_bytes())
        .map_err(io_error("write", path))
}

/// Reads a cgroup interface file: an open, reads into one page-sized
/// buffer until the end, a close. `fs::read_to_string` first stats the file
/// for its size (always 0 or 4096 on cgroupfs) and then reads 32 bytes at a
/// time; these files are on the path of every workload's start and end.
pub(crate) fn read_small(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut file = fs::File::open(path)?;
    let mut content = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => content.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(content).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    read_small(path).map_err(io_error("read", path))
}

/// The whitespace-separated words of `path`, or none if it does not exist.
pub(crate) fn read_words(path: &Path) -> Result<Vec<String>, CgroupError> {
    match read_small(path) {
        Ok(s) => Ok(s.split_whitespace().map(str::to_string).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// The value of `key` in a flat-keyed file (`key value` lines, such as
/// memory.events or memory.oom_control); 0 when the file or the key is
/// missing (a kernel too old to count it, a cgroup already gone).
pub(crate) fn read_counter(path: &Path, key: &str) -> Result<u64, CgroupError> {
    let content = match read_small(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error("read", path)(e)),
    };
    parse_counter(path, &content, key)
}

/// The value of `key` in `content`, a `key value` per line file read from
/// `path`; 0 when the key is absent.
pub(crate) fn parse_counter(path: &Path, content: &str, key: &str) -> Result<u64, CgroupError> {
    let Some(value) = content.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim())
    }) else {
        return Ok(0);
    };
    value.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: value.to_string(),
    })
}

pub(crate) fn mkdir_p(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(io_error("create", dir))
}

/// Pids listed in one `cgroup.procs`. Pid 0 stands for a process outside our
/// pid namespace: it cannot be addressed, so it is left out.
pub(crate) fn parse_procs(path: &Path, content: &str) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for word in content.split_whitespace() {
        let pid: i32 = word.parse().map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            content: word.to_string(),
        })?;
        if pid > 0 {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Every cgroup directory from `dir` down, each parent before its children
/// (so the reverse order is deepest first). A missing `dir` yields nothing;
/// children that vanish while we walk are skipped.
pub(crate) fn cgroup_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        // A directory's link count is 2 + its subdirectories on cgroupfs
        // (kernfs), ext4 and tmpfs: 2 is a leaf, the usual workload cgroup,
        // known by one stat instead of listing its dozens of interface files.
        match fs::symlink_metadata(&current) {
            Ok(m) if m.is_dir() && m.nlink() == 2 => {
                out.push(current);
                continue;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("stat", &current)(e)),
        }
        let entries = match fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("list", &current)(e)),
        };
        let mut children = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("list", &current)(e)),
            };
            // file_type() does not follow symlinks: a link never leads out of the tree.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                children.push(entry.path());
            }
        }
        out.push(current);
        // Sorted, and pushed reversed, so the walk is deterministic and in name order.
        children.sort();
        stack.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// Pids of every cgroup from `dir` down, sorted and without duplicates (v1
/// lists may repeat a pid). A missing tree, or a cgroup that goes away while
/// we read it, contributes nothing.
pub(crate) fn tree_pids(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    for cgroup in cgroup_dirs(dir)? {
        let procs = cgroup.join("cgroup.procs");
        match read_small(&procs) {
            Ok(content) => pids.extend(parse_procs(&procs, &content)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("read", &procs)(e)),
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Names of the direct child directories of `dir`, sorted; none if it is missing.
pub fn child_names(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("list", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// rmdir `dir` and every cgroup below it, deepest first. EBUSY (a process still
/// leaving, or a child cgroup created meanwhile) is retried until `timeout`.
/// A missing tree is fine. Only empty directories can go: on cgroupfs the
/// kernel's interface files do not count, elsewhere any file makes rmdir fail.
pub fn remove_tree(dir: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + timeout;
    loop {
        match remove_tree_once(dir) {
            Ok(()) => return Ok(()),
            Err(CgroupError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

fn remove_tree_once(dir: &Path) -> Result<(), CgroupError> {
    for cgroup in cgroup_dirs(dir)?.iter().rev() {
        match fs::remove_dir(cgroup) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", cgroup)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    #[test]
    fn tree_pids_reads_nested_procs_and_skips_pid_zero() {
        let root = TempDir::new().expect("tempdir");
        let top = root.path().join("a");
        fs::create_dir_all(top.join("b/c")).expect("mkdir");
        fs::create_dir_all(top.join("d")).expect("mkdir");
        fs::write(top.join("cgroup.procs"), "5\n0\n").expect("write");
        fs::write(top.join("b/cgroup.procs"), "").expect("write");
        fs::write(top.join("b/c/cgroup.procs"), "7\n3\n7\n").expect("write");
        fs::write(top.join("d/cgroup.procs"), "11\n").expect("write");
        assert_eq!(tree_pids(&top).expect("pids"), [3, 5, 7, 11]);
        assert_eq!(tree_pids(&top.join("b")).expect("pids"), [3, 7]);
        assert_eq!(
            tree_pids(&root.path().join("missing")).expect("pids"),
            Vec::<i32>::new()
        );
    }

    #[test]
    fn tree_pids_reports_garbage_with_its_file() {
        let root = TempDir::new().expect("tempdir");
        fs::write(root.path().join("cgroup.procs"), "12\nnope\n").expect("write");
        let err = tree_pids(root.path()).expect_err("garbage");
        assert!(matches!(err, CgroupError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("cgroup.procs"), "{err}");
    }

    #[test]
    fn cgroup_dirs_lists_parents_before_children() {
        let root = TempDir::new().expect("tempdir");
        fs::create_dir_all(root.path().join("x/y/z")).expect("mkdir");
        fs::create_dir_all(root.path().join("x/w")).expect("mkdir");
        let rel: Vec<_> = cgroup_dirs(&root.path().join("x"))
            .expect("walk")
            .iter()
            .map(|p| {
                p.strip_prefix(root.path())
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(rel, ["x", "x/w", "x/y", "x/y/z"]);
    }

    #[test]
    fn write_file_never_creates_a_missing_interface_file() {
        let root = TempDir::new().expect("tempdir");
        let missing = root.path().join("cgroup.kill");
        let err = write_file(&missing, "1").expect_err("missing");
        assert!(err.to_string().contains("cgroup.kill"), "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn remove_tree_refuses_a_non_empty_directory_and_ignores_missing_ones() {
        let root = TempDir::new().expect("tempdir");
        let dir = root.path().join("a/b");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("stray"), "").expect("write");
        let err = remove_tree(&root.path().join("a"), Duration::from_millis(10))
            .expect_err("a file blocks rmdir");
        assert!(err.to_string().contains("a/b"), "{err}");
        remove_tree(&root.path().join("missing"), Duration::from_millis(10)).expect("missing");
    }
}
