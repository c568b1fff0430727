//! cgroup v2: one unified tree under the mount root. Controllers reach a
//! cgroup only when every ancestor lists them in `cgroup.subtree_control`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::Signal;

use super::signal::{kill_until_empty, signal_pids, wait_until, Signaller};
use super::{
    fs, CgroupDriver, CgroupError, CgroupPath, CgroupProbe, CgroupVersion, Limits, Timeouts,
};

/// Controllers `create` enables for new cgroups, when the host offers them.
pub const V2_CONTROLLERS: [&str; 4] = ["cpu", "memory", "pids", "io"];

#[derive(Debug)]
pub struct V2Driver {
    root: PathBuf,
    signaller: Arc<dyn Signaller>,
    timeouts: Timeouts,
    /// False only in tests that exercise the freezer fallback on a kernel
    /// that has `cgroup.kill`.
    use_kill_file: bool,
}

impl V2Driver {
    pub fn new(mount_root: &Path, signaller: Arc<dyn Signaller>) -> Self {
        Self {
            root: mount_root.to_path_buf(),
            signaller,
            timeouts: Timeouts::default(),
            use_kill_file: true,
        }
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    #[cfg(test)]
    pub(crate) fn without_kill_file(mut self) -> Self {
        self.use_kill_file = false;
        self
    }

    fn dir(&self, path: &CgroupPath) -> PathBuf {
        self.root.join(path.as_rel_path())
    }

    /// Enables in `dir`'s subtree_control those of [`V2_CONTROLLERS`] that `dir`
    /// has and has not enabled yet. Best effort: a controller the kernel
    /// refuses (a populated namespace root, say) costs its limits, not the
    /// cgroup, so it is logged and skipped.
    fn enable_controllers(&self, dir: &Path) -> Result<(), CgroupError> {
        let available = fs::read_words(&dir.join("cgroup.controllers"))?;
        let enabled = fs::read_words(&dir.join("cgroup.subtree_control"))?;
        let wanted: Vec<String> = V2_CONTROLLERS
            .iter()
            .filter(|c| available.iter().any(|a| a == *c) && !enabled.iter().any(|e| e == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let control = dir.join("cgroup.subtree_control");
        if fs::write_file(&control, &wanted.join(" ")).is_ok() {
            return Ok(());
        }
        // One refusal fails the whole write: retry one by one to keep the rest.
        for controller in &wanted {
            if let Err(e) = fs::write_file(&control, controller) {
                tracing::warn!(
                    controller = %controller,
                    error = %crate::error_chain::chain(&e),
                    "cannot enable cgroup controller"
                );
            }
        }
        Ok(())
    }

    /// One kill round: cgroup.kill, else freeze-kill-thaw, else plain SIGKILLs.
    fn kill_round(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        let dir = self.dir(path);
        let kill = dir.join("cgroup.kill");
        if self.use_kill_file && kill.is_file() {
            // The kernel kills the whole subtree and any fork racing with it.
            return fs::write_file(&kill, "1");
        }
        let freeze = dir.join("cgroup.freeze");
        if freeze.is_file() {
            fs::write_file(&freeze, "1")?;
            let killed = self.kill_frozen(path, &dir);
            // v2 lets SIGKILL through to frozen tasks, but never leave a cgroup frozen.
            let thawed = fs::write_file(&freeze, "0");
            return killed.and(thawed);
        }
        self.signal_all(path, Signal::SIGKILL).map(drop)
    }

    fn kill_frozen(&self, path: &CgroupPath, dir: &Path) -> Result<(), CgroupError> {
        let events = dir.join("cgroup.events");
        let frozen = wait_until(self.timeouts.freeze, || {
            Ok(fs::read_file(&events)?
                .lines()
                .any(|l| l.trim() == "frozen 1"))
        })?;
        if !frozen {
            tracing::warn!(
                cgroup = %dir.display(),
                "cgroup did not freeze in {} ms; killing it anyway",
                self.timeouts.freeze.as_millis()
            );
        }
        self.signal_all(path, Signal::SIGKILL).map(drop)
    }
}

impl CgroupDriver for V2Driver {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        fs::mkdir_p(&self.dir(path))?;
        // Top down: the mount root, then each ancestor below it, so every
        // level offers its child what the leaf should end up with.
        let mut ancestor = self.root.clone();
        self.enable_controllers(&ancestor)?;
        let segments: Vec<&str> = path.segments().collect();
        for segment in &segments[..segments.len().saturating_sub(1)] {
            ancestor.push(segment);
            self.enable_controllers(&ancestor)?;
        }
        Ok(())
    }

    fn procs_files(&self, path: &CgroupPath) -> Vec<PathBuf> {
        vec![self.dir(path).join("cgroup.procs")]
    }

    fn add_pid(&self, path: &CgroupPath, pid: i32) -> Result<(), CgroupError> {
        let procs = self.dir(path).join("cgroup.procs");
        // Writing 0 would move the caller itself.
        if pid <= 0 {
            return Err(CgroupError::InvalidPid { pid, path: procs });
        }
        fs::write_file(&procs, &pid.to_string())
    }

    fn probe(&self, path: &CgroupPath) -> Result<CgroupProbe, CgroupError> {
        let dir = self.dir(path);
        let oom = dir.join("memory.events");
        CgroupProbe::open(&dir, Some(oom))
    }

    fn pids(&self, path: &CgroupPath) -> Result<Vec<i32>, CgroupError> {
        fs::tree_pids(&self.dir(path))
    }

    fn signal_all(&self, path: &CgroupPath, signal: Signal) -> Result<usize, CgroupError> {
        let pids = self.pids(path)?;
        signal_pids(&*self.signaller, &pids, signal, &self.dir(path))
    }

    fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        kill_until_empty(
            &self.dir(path),
            self.timeouts.kill,
            || self.kill_round(path),
            || self.pids(path),
        )
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        fs::remove_tree(&self.dir(path), self.timeouts.remove)
    }

    fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError> {
        fs::read_counter(&self.dir(path).join("memory.events"), "oom_kill")
    }

    fn set_limits(&self, path: &CgroupPath, limits: &Limits) -> Result<(), CgroupError> {
        let dir = self.dir(path);
        let period = super::limits::CPU_PERIOD_US;
        let writes = [
            (
                "limits.pids",
                "pids",
                "pids.max",
                limits.pids.map(|n| n.to_string()),
            ),
            (
                "limits.memory_bytes",
                "memory",
                "memory.max",
                limits.memory_bytes.map(|n| n.to_string()),
            ),
            (
                "limits.cpu_millis",
                "cpu",
                "cpu.max",
                limits
                    .cpu_millis
                    .map(|m| format!("{} {period}", Limits::cpu_quota_us(m))),
            ),
        ];
        for (what, controller, file, value) in writes {
            let Some(value) = value else { continue };
            let file = dir.join(file);
            // The file exists exactly when the controller is enabled here.
            if !file.is_file() {
                return Err(CgroupError::NoController {
                    what,
                    controller,
                    path: dir.clone(),
                });
            }
            fs::write_file(&file, &value)?;
        }
        Ok(())
    }

    fn has_controller(&self, controller: &str) -> bool {
        fs::read_words(&self.root.join("cgroup.controllers"))
            .is_ok_and(|words| words.iter().any(|w| w == controller))
    }

    fn exists(&self, path: &CgroupPath) -> bool {
        self.dir(path).is_dir()
    }

    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError> {
        fs::child_names(&self.dir(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::signal::RecordingSignaller;
    use std::fs as stdfs;
    use std::time::Duration;
    use tempfile::TempDir;

    fn driver(root: &Path, fake: &Arc<RecordingSignaller>) -> V2Driver {
        V2Driver::new(root, fake.clone()).with_timeouts(Timeouts {
            kill: Duration::from_millis(60),
            freeze: Duration::from_millis(20),
            remove: Duration::from_millis(20),
        })
    }

    fn path(p: &str) -> CgroupPath {
        CgroupPath::new(p).expect("valid path")
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let file = root.join(rel);
        if let Some(dir) = file.parent() {
            stdfs::create_dir_all(dir).expect("mkdir");
        }
        stdfs::write(file, content).expect("write");
    }

    fn read(root: &Path, rel: &str) -> String {
        stdfs::read_to_string(root.join(rel)).expect("read")
    }

    /// A cgroup as the kernel presents it: `controllers` offered, none enabled.
    fn cgroup(root: &Path, rel: &str, controllers: &str) {
        write(root, &format!("{rel}/cgroup.controllers"), controllers);
        write(root, &format!("{rel}/cgroup.subtree_control"), "");
    }

    #[test]
    fn create_enables_offered_controllers_in_each_ancestor() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        // The kernel would propagate; the fixture spells out what each level offers.
        cgroup(r, ".", "cpuset cpu memory pids hugetlb\n");
        cgroup(r, "aurae", "cpu memory pids\n");
        cgroup(r, "aurae/exec", "memory pids\n");
        driver(r, &Arc::new(RecordingSignaller::new()))
            .create(&path("aurae/exec/17"))
            .expect("create");
        assert!(r.join("aurae/exec/17").is_dir());
        assert_eq!(read(r, "cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(
            read(r, "aurae/cgroup.subtree_control"),
            "+cpu +memory +pids"
        );
        assert_eq!(
            read(r, "aurae/exec/cgroup.subtree_control"),
            "+memory +pids"
        );
        assert!(
            !r.join("aurae/exec/17/cgroup.subtree_control").exists(),
            "the leaf keeps its processes"
        );
    }

    #[test]
    fn create_skips_controllers_already_enabled() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        cgroup(r, ".", "cpu io memory pids\n");
        write(r, "cgroup.subtree_control", "cpu io memory pids\n");
        driver(r, &Arc::new(RecordingSignaller::new()))
            .create(&path("top"))
            .expect("create");
        assert_eq!(
            read(r, "cgroup.subtree_control"),
            "cpu io memory pids\n",
            "untouched"
        );
        assert!(r.join("top").is_dir());
    }

    #[test]
    fn procs_files_is_the_one_cgroup_procs() {
        let root = TempDir::new().expect("tempdir");
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        assert_eq!(
            d.procs_files(&path("a/b")),
            [root.path().join("a/b/cgroup.procs")]
        );
    }

    #[test]
    fn add_pid_writes_cgroup_procs() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/cgroup.procs", "");
        let d = driver(r, &Arc::new(RecordingSignaller::new()));
        d.add_pid(&path("a"), 77).expect("add");
        assert_eq!(read(r, "a/cgroup.procs"), "77");
        assert!(matches!(
            d.add_pid(&path("a"), -1),
            Err(CgroupError::InvalidPid { pid: -1, .. })
        ));
        let err = d.add_pid(&path("missing"), 77).expect_err("missing cgroup");
        assert!(err.to_string().contains("missing/cgroup.procs"), "{err}");
    }

    #[test]
    fn pids_reads_nested_procs() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/cgroup.procs", "3\n");
        write(r, "a/b/cgroup.procs", "");
        write(r, "a/b/c/cgroup.procs", "5\n4\n");
        write(r, "other/cgroup.procs", "9\n");
        let d = driver(r, &Arc::new(RecordingSignaller::new()));
        assert_eq!(d.pids(&path("a")).expect("pids"), [3, 4, 5]);
        assert_eq!(d.pids(&path("nope")).expect("pids"), Vec::<i32>::new());
    }

    #[test]
    fn signal_all_signals_each_pid() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/cgroup.procs", "3\n");
        write(r, "a/b/cgroup.procs", "4\n");
        let fake = Arc::new(RecordingSignaller::new());
        let n = driver(r, &fake)
            .signal_all(&path("a"), Signal::SIGHUP)
            .expect("signal");
        assert_eq!(n, 2);
        assert_eq!(fake.sent(), [(3, Signal::SIGHUP), (4, Signal::SIGHUP)]);
    }

    #[test]
    fn kill_all_prefers_cgroup_kill() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/cgroup.procs", "3\n");
        write(r, "a/cgroup.kill", "");
        write(r, "a/cgroup.freeze", "0\n");
        let fake = Arc::new(RecordingSignaller::new());
        // Nothing dies in a fixture, so the bounded loop must give up.
        let err = driver(r, &fake)
            .kill_all(&path("a"))
            .expect_err("fixture pids never exit");
        assert!(
            matches!(&err, CgroupError::KillTimeout { pids, .. } if *pids == [3]),
            "{err}"
        );
        assert_eq!(read(r, "a/cgroup.kill"), "1");
        assert_eq!(read(r, "a/cgroup.freeze"), "0\n", "freezer untouched");
        assert!(
            fake.sent().is_empty(),
            "the kernel does the killing: {:?}",
            fake.sent()
        );
    }

    #[test]
    fn kill_all_freezes_kills_thaws_without_cgroup_kill() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/cgroup.procs", "3\n");
        write(r, "a/b/cgroup.procs", "4\n");
        write(r, "a/cgroup.freeze", "0\n");
        write(r, "a/cgroup.events", "populated 1\nfrozen 1\n");
        let fake = Arc::new(RecordingSignaller::new());
        driver(r, &fake)
            .kill_all(&path("a"))
            .expect_err("fixture pids never exit");
        assert_eq!(read(r, "a/cgroup.freeze"), "0", "thawed again");
        let sent = fake.sent();
        assert_eq!(sent[..2], [(3, Signal::SIGKILL), (4, Signal::SIGKILL)]);
    }

    #[test]
    fn kill_all_of_an_empty_cgroup_writes_nothing() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/cgroup.procs", "");
        write(r, "a/cgroup.kill", "");
        driver(r, &Arc::new(RecordingSignaller::new()))
            .kill_all(&path("a"))
            .expect("empty");
        assert_eq!(read(r, "a/cgroup.kill"), "");
    }

    #[test]
    fn set_limits_writes_pids_memory_and_cpu_max() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        cgroup(r, ".", "cpu memory pids\n");
        for f in ["pids.max", "memory.max", "cpu.max"] {
            write(r, &format!("a/{f}"), "max\n");
        }
        let d = driver(r, &Arc::new(RecordingSignaller::new()));
        d.set_limits(&path("a"), &Limits::from_wire(100, 64 << 20, 1500))
            .expect("set");
        assert_eq!(read(r, "a/pids.max"), "100");
        assert_eq!(read(r, "a/memory.max"), "67108864");
        assert_eq!(read(r, "a/cpu.max"), "150000 100000");
        assert!(d.has_controller("pids") && !d.has_controller("io"));
    }

    #[test]
    fn oom_kills_reads_memory_events() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        let d = driver(r, &Arc::new(RecordingSignaller::new()));
        assert_eq!(d.oom_kills(&path("a")).expect("missing cgroup"), 0);
        write(
            r,
            "a/memory.events",
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
        );
        assert_eq!(d.oom_kills(&path("a")).expect("read"), 1);
        write(r, "a/memory.events", "low 0\nmax 0\n");
        assert_eq!(d.oom_kills(&path("a")).expect("no oom_kill key"), 0);
    }

    #[test]
    fn set_limits_without_the_controller_file_says_which() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "a/pids.max", "max\n");
        let d = driver(r, &Arc::new(RecordingSignaller::new()));
        let err = d
            .set_limits(&path("a"), &Limits::from_wire(5, 0, 100))
            .expect_err("no cpu.max");
        assert!(
            matches!(
                err,
                CgroupError::NoController {
                    controller: "cpu",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("limits.cpu_millis"), "{err}");
    }

    #[test]
    fn remove_and_children() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        let d = driver(r, &Arc::new(RecordingSignaller::new()));
        // Bare directories: rmdir sees them empty, as it sees a real cgroup.
        for leaf in ["top/x/y", "top/z"] {
            stdfs::create_dir_all(r.join(leaf)).expect("mkdir");
        }
        assert_eq!(d.children(&path("top")).expect("children"), ["x", "z"]);
        d.remove(&path("top")).expect("remove");
        assert!(!d.exists(&path("top")));
        d.remove(&path("top")).expect("missing is ok");
        assert_eq!(
            d.children(&path("top")).expect("children"),
            Vec::<String>::new()
        );
    }
}
