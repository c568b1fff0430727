//! The cgroup layer: one [`CgroupDriver`] trait with a cgroup v1 and a cgroup v2
//! implementation, chosen once at startup by [`detect_host`].
//!
//! Callers name cgroups with a validated, relative [`CgroupPath`] such as
//! `aurae/exec/17`; each driver maps it under its mount root (v2) or under
//! every hierarchy it uses (v1). Drivers take their mount root and a
//! [`signal::Signaller`], so unit tests run without root on temp-dir fixtures.
//!
//! All methods block (file I/O, bounded sleeps in `kill_all` and `remove`):
//! call them from `spawn_blocking` in async code.

mod fs;
mod limits;
mod probe;
pub mod signal;
pub mod v1;
pub mod v2;

#[cfg(test)]
mod host_tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use thiserror::Error;

pub use self::fs::{child_names, remove_tree};
pub use self::limits::{LimitError, Limits};
pub use self::probe::CgroupProbe;
use self::signal::{NixSignaller, Signaller};
use self::v1::V1Driver;
use self::v2::V2Driver;

/// Where the host mounts its cgroup filesystems.
pub const HOST_MOUNT_ROOT: &str = "/sys/fs/cgroup";

/// Longest accepted path segment (the kernel's `NAME_MAX`).
pub const MAX_SEGMENT_LEN: usize = 255;

/// Ends the directory name of every workload cgroup, as systemd's
/// `.service` and `.scope` do: the kernel's interface files are named
/// `cgroup.*`, `<controller>.*`, `tasks`, `notify_on_release` and
/// `release_agent`, none of which ends in `.scope`, so no workload name
/// (`tasks`, `pids.max`, ...) can collide with one.
pub const WORKLOAD_SUFFIX: &str = ".scope";

/// Which cgroup interface the host exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(
        "no cgroup v1 controller among pids, cpu, cpuacct, memory, freezer is mounted under {}",
        root.display()
    )]
    NoControllers { root: PathBuf },
    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set {what} on {}: the {controller} controller is not available for it", path.display())]
    NoController {
        what: &'static str,
        controller: &'static str,
        path: PathBuf,
    },
    #[error("unexpected content {content:?} in {}", path.display())]
    Parse { path: PathBuf, content: String },
    #[error("refusing to move pid {pid} into {}: pids must be positive", path.display())]
    InvalidPid { pid: i32, path: PathBuf },
    #[error("cannot send {signal} to pid {pid} of {}", path.display())]
    Signal {
        pid: i32,
        signal: Signal,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(
        "{} still holds {} processes ({pids:?}) after {} ms of SIGKILL",
        path.display(), pids.len(), waited.as_millis()
    )]
    KillTimeout {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
}

/// A validated relative cgroup path such as "aurae/exec/17" (segments of
/// [A-Za-z0-9._-], no "." or "..", not empty, no leading '/').
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupPath(String);

impl CgroupPath {
    pub fn new(rel: &str) -> Result<Self, CgroupError> {
        let invalid = |reason: String| CgroupError::InvalidPath {
            path: rel.to_string(),
            reason,
        };
        if rel.is_empty() {
            return Err(invalid("is empty".to_string()));
        }
        if rel.starts_with('/') {
            return Err(invalid(
                "must be relative to the cgroup mount, without a leading '/'".to_string(),
            ));
        }
        for segment in rel.split('/') {
            check_segment(segment).map_err(invalid)?;
        }
        Ok(Self(rel.to_string()))
    }

    /// This path with one more segment appended (`segment` may not contain '/').
    pub fn join(&self, segment: &str) -> Result<Self, CgroupError> {
        let joined = format!("{}/{segment}", self.0);
        check_segment(segment).map_err(|reason| CgroupError::InvalidPath {
            path: joined.clone(),
            reason,
        })?;
        Ok(Self(joined))
    }

    /// The cgroup of the workload `name` under this path: the one way every
    /// caller (executables, schedule, cells) names a workload's cgroup, so
    /// that no name collides with a kernel interface file.
    pub fn workload(&self, name: &str) -> Result<Self, CgroupError> {
        self.join(&format!("{name}{WORKLOAD_SUFFIX}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The path as a relative filesystem path, to join onto a mount root.
    pub(crate) fn as_rel_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The workload name of a cgroup directory made by [`CgroupPath::workload`];
/// None for any other directory.
pub fn workload_name(segment: &str) -> Option<&str> {
    segment
        .strip_suffix(WORKLOAD_SUFFIX)
        .filter(|name| !name.is_empty())
}

/// Why `segment` is not a valid path segment, if it is not.
fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("has an empty segment".to_string());
    }
    if segment == "." || segment == ".." {
        return Err(format!("has a {segment:?} segment"));
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(format!("has a segment longer than {MAX_SEGMENT_LEN} bytes"));
    }
    if let Some(c) = segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}: segments allow only [A-Za-z0-9._-]"
        ));
    }
    Ok(())
}

/// How long the drivers wait on the kernel before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `kill_all`: from the first SIGKILL until the tree must be empty.
    pub kill: Duration,
    /// `kill_all`: how long one freeze may take before killing anyway.
    pub freeze: Duration,
    /// `remove`: how long to retry `rmdir` on EBUSY while processes exit.
    pub remove: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            kill: Duration::from_secs(2),
            freeze: Duration::from_secs(1),
            remove: Duration::from_secs(1),
        }
    }
}

pub trait CgroupDriver: Send + Sync + std::fmt::Debug + 'static {
    fn version(&self) -> CgroupVersion;
    /// mkdir -p the cgroup in every hierarchy used; v2: enable the available
    /// controllers among cpu, memory, pids, io in each ancestor's
    /// cgroup.subtree_control (below the mount root) so the leaf has them.
    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError>;
    /// Absolute paths of the `cgroup.procs` files a freshly forked child writes
    /// "0" into (from a pre_exec hook) so it is placed before it execs.
    /// v1: one per hierarchy used; v2: one.
    fn procs_files(&self, path: &CgroupPath) -> Vec<PathBuf>;
    /// The files a freshly cloned, still single-threaded child writes "0"
    /// into to place itself before exec (the process layer's launch):
    /// [`Self::procs_files`] unless the driver has a cheaper equivalent.
    fn self_placement_files(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.procs_files(path)
    }
    fn add_pid(&self, path: &CgroupPath, pid: i32) -> Result<(), CgroupError>;
    /// The cgroup's files for [`Self::pids`] and [`Self::oom_kills`], kept
    /// open (by the process layer's pool) for the checks at the end of
    /// every run the cgroup hosts.
    fn probe(&self, path: &CgroupPath) -> Result<CgroupProbe, CgroupError>;
    /// Every pid in the cgroup and all its descendant cgroups (read
    /// cgroup.procs recursively; v1: from the hierarchy used for tracking,
    /// "pids" preferred, else the first one). Missing cgroup -> Ok(empty).
    fn pids(&self, path: &CgroupPath) -> Result<Vec<i32>, CgroupError>;
    /// Send `signal` to every pid in the cgroup tree; returns how many were
    /// signalled (ESRCH ignored).
    fn signal_all(&self, path: &CgroupPath, signal: Signal) -> Result<usize, CgroupError>;
    /// SIGKILL everything in the tree without racing forks: v2 write "1" to
    /// cgroup.kill when it exists, else freeze (cgroup.freeze=1), kill, thaw;
    /// v1 use the freezer hierarchy (freezer.state FROZEN, wait until FROZEN,
    /// kill, THAWED) when it is mounted, else kill in a loop until empty.
    /// Loops until pids() is empty or [`Timeouts::kill`] passes.
    fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError>;
    /// rmdir the cgroup (deepest descendants first) in every hierarchy; retry
    /// briefly on EBUSY while exiting processes leave; missing -> Ok.
    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError>;
    /// Writes the limits that are set (a `None` is left as the kernel's
    /// default). A limit whose controller the cgroup lacks is an error.
    fn set_limits(&self, path: &CgroupPath, limits: &Limits) -> Result<(), CgroupError>;
    /// How many processes of this cgroup the kernel's OOM killer has
    /// killed: v2 `oom_kill` of memory.events, v1 `oom_kill` of
    /// memory.oom_control (counted in the victim's own memory cgroup, also
    /// when an ancestor's limit was hit). 0 without a memory controller.
    fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError>;
    /// Whether new cgroups get `controller` (pids, memory, cpu).
    fn has_controller(&self, controller: &str) -> bool;
    /// v1: true when the cgroup exists in any hierarchy used.
    fn exists(&self, path: &CgroupPath) -> bool;
    /// Names of direct child cgroups (used to find leftovers of a crashed
    /// daemon), sorted. Missing -> Ok(empty).
    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError>;
}

/// Refuses `limits` that `driver` could not apply (a limit whose controller
/// new cgroups do not get), before anything is created or persisted.
pub fn check_controllers(driver: &dyn CgroupDriver, limits: &Limits) -> Result<(), CgroupError> {
    let wanted = [
        ("limits.pids", "pids", limits.pids.is_some()),
        (
            "limits.memory_bytes",
            "memory",
            limits.memory_bytes.is_some(),
        ),
        ("limits.cpu_millis", "cpu", limits.cpu_millis.is_some()),
    ];
    for (what, controller, set) in wanted {
        if set && !driver.has_controller(controller) {
            return Err(CgroupError::NoController {
                what,
                controller,
                path: PathBuf::from(HOST_MOUNT_ROOT),
            });
        }
    }
    Ok(())
}

/// Detect the host's layout under `mount_root` (normally /sys/fs/cgroup): v2 if
/// `<root>/cgroup.controllers` exists, else v1 using those of these controllers
/// that are mounted as `<root>/<name>` directories: pids, cpu, cpuacct, memory,
/// freezer (skip the ones not present; error if none).
pub fn detect(mount_root: &Path) -> Result<Arc<dyn CgroupDriver>, CgroupError> {
    detect_with(mount_root, Arc::new(NixSignaller))
}

/// [`detect`] with a chosen way of delivering signals (a recording fake in tests).
pub fn detect_with(
    mount_root: &Path,
    signaller: Arc<dyn Signaller>,
) -> Result<Arc<dyn CgroupDriver>, CgroupError> {
    let driver: Arc<dyn CgroupDriver> = if mount_root.join("cgroup.controllers").is_file() {
        Arc::new(V2Driver::new(mount_root, signaller))
    } else {
        Arc::new(V1Driver::detect(mount_root, signaller)?)
    };
    tracing::debug!(
        version = %driver.version(),
        root = %mount_root.display(),
        "detected cgroup layout"
    );
    Ok(driver)
}

/// `detect("/sys/fs/cgroup")`.
pub fn detect_host() -> Result<Arc<dyn CgroupDriver>, CgroupError> {
    detect(Path::new(HOST_MOUNT_ROOT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use tempfile::TempDir;

    #[test]
    fn path_accepts_relative_segment_paths() {
        for p in [
            "aurae",
            "aurae/exec/17",
            "a.b_c-d/X9",
            "..a/b..",
            &"s".repeat(MAX_SEGMENT_LEN),
        ] {
            let path = CgroupPath::new(p).expect(p);
            assert_eq!(path.as_str(), p);
            assert_eq!(path.to_string(), p);
        }
        let path = CgroupPath::new("aurae/exec/17").expect("valid");
        assert_eq!(path.segments().collect::<Vec<_>>(), ["aurae", "exec", "17"]);
    }

    #[test]
    fn path_rejects_unsafe_or_malformed_input() {
        let too_long = "s".repeat(MAX_SEGMENT_LEN + 1);
        for p in [
            "", "/abs", "a/../b", "a//b", "a b", ".", "..", "a/", "a/./b", "a\\b", "a\0b", "é",
            &too_long,
        ] {
            let err = CgroupPath::new(p).expect_err(p);
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{p:?}: {err}"
            );
            assert!(err.to_string().contains(&format!("{p:?}")), "{err}");
        }
    }

    #[test]
    fn join_appends_exactly_one_valid_segment() {
        let base = CgroupPath::new("aurae/exec").expect("valid");
        assert_eq!(base.join("17").expect("valid").as_str(), "aurae/exec/17");
        for bad in ["", ".", "..", "a/b", "/x", "a b"] {
            let err = base.join(bad).expect_err(bad);
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn workload_cgroups_never_take_a_kernel_file_name() {
        let base = CgroupPath::new("aurae/schedule").expect("valid");
        for name in [
            "tasks",
            "pids.max",
            "cgroup.procs",
            "memory.limit_in_bytes",
            "web",
        ] {
            let path = base.workload(name).expect(name);
            let last = path.segments().last().expect("a segment");
            assert_eq!(last, format!("{name}.scope"));
            assert_eq!(workload_name(last), Some(name));
        }
        assert_eq!(workload_name("tasks"), None);
        assert_eq!(workload_name(".scope"), None);
        assert!(base.workload("a/b").is_err());
    }

    #[test]
    fn version_displays_lowercase() {
        assert_eq!(CgroupVersion::V1.to_string(), "v1");
        assert_eq!(CgroupVersion::V2.to_string(), "v2");
    }

    #[test]
    fn detect_picks_v2_when_cgroup_controllers_exists() {
        let root = TempDir::new().expect("tempdir");
        fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").expect("write");
        // v1-looking directories must not matter once cgroup.controllers exists.
        fs::create_dir(root.path().join("pids")).expect("mkdir");
        let driver = detect(root.path()).expect("detect");
        assert_eq!(driver.version(), CgroupVersion::V2);
        let path = CgroupPath::new("aurae/x").expect("valid");
        assert_eq!(
            driver.procs_files(&path),
            [root.path().join("aurae/x/cgroup.procs")]
        );
    }

    #[test]
    fn detect_picks_v1_with_only_the_mounted_controllers() {
        let root = TempDir::new().expect("tempdir");
        for dir in ["memory", "pids", "cpuset", "systemd", "unified"] {
            fs::create_dir(root.path().join(dir)).expect("mkdir");
        }
        // A file named like a controller is not a mounted hierarchy.
        fs::write(root.path().join("freezer"), "").expect("write");
        let driver = detect(root.path()).expect("detect");
        assert_eq!(driver.version(), CgroupVersion::V1);
        let path = CgroupPath::new("aurae/x").expect("valid");
        assert_eq!(
            driver.procs_files(&path),
            [
                root.path().join("pids/aurae/x/cgroup.procs"),
                root.path().join("memory/aurae/x/cgroup.procs"),
            ]
        );
    }

    #[test]
    fn detect_fails_without_v2_marker_or_v1_controllers() {
        let root = TempDir::new().expect("tempdir");
        fs::create_dir(root.path().join("cpuset")).expect("mkdir");
        let err = detect(root.path()).expect_err("no controllers");
        assert!(matches!(err, CgroupError::NoControllers { .. }), "{err}");
        assert!(
            err.to_string().contains(&root.path().display().to_string()),
            "{err}"
        );
    }
}
