//! cgroup v1: one directory tree per mounted hierarchy (`<root>/pids`,
//! `<root>/memory`, ...). A cgroup path exists once in each hierarchy used; a
//! process is placed by writing its pid into every one of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::Signal;

use super::signal::{kill_until_empty, signal_pids, wait_until, Signaller};
use super::{
    fs, CgroupDriver, CgroupError, CgroupPath, CgroupProbe, CgroupVersion, Limits, Timeouts,
};

/// The controllers this driver uses, in order; the first present one that is
/// "pids" tracks membership, else the first hierarchy found. cpuset is left
/// out on purpose: a v1 cpuset cgroup rejects tasks until cpus and mems are set.
pub const V1_CONTROLLERS: [&str; 5] = ["pids", "cpu", "cpuacct", "memory", "freezer"];

/// One mounted hierarchy, and the controllers reached through it (several
/// names when they are co-mounted, as in `cpu -> cpu,cpuacct`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub controllers: Vec<&'static str>,
    pub dir: PathBuf,
}

#[derive(Debug)]
pub struct V1Driver {
    hierarchies: Vec<Hierarchy>,
    /// Index of the hierarchy whose cgroup.procs answer `pids()`.
    tracking: usize,
    /// Index of the freezer hierarchy, when mounted.
    freezer: Option<usize>,
    signaller: Arc<dyn Signaller>,
    timeouts: Timeouts,
}

impl V1Driver {
    /// Uses each of [`V1_CONTROLLERS`] mounted as a `<mount_root>/<name>`
    /// directory; fails when none is.
    pub fn detect(mount_root: &Path, signaller: Arc<dyn Signaller>) -> Result<Self, CgroupError> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        let mut seen: Vec<PathBuf> = Vec::new();
        for name in V1_CONTROLLERS {
            let dir = mount_root.join(name);
            if !dir.is_dir() {
                continue;
            }
            // Co-mounted controllers share one directory behind symlinks.
            let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            match seen.iter().position(|s| *s == real) {
                Some(i) => hierarchies[i].controllers.push(name),
                None => {
                    seen.push(real);
                    hierarchies.push(Hierarchy {
                        controllers: vec![name],
                        dir,
                    });
                }
            }
        }
        if hierarchies.is_empty() {
            return Err(CgroupError::NoControllers {
                root: mount_root.to_path_buf(),
            });
        }
        let find = |c: &str| hierarchies.iter().position(|h| h.controllers.contains(&c));
        let tracking = find("pids").unwrap_or(0);
        let freezer = find("freezer");
        Ok(Self {
            hierarchies,
            tracking,
            freezer,
            signaller,
            timeouts: Timeouts::default(),
        })
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The hierarchies in use, in [`V1_CONTROLLERS`] order.
    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    fn dirs<'a>(&'a self, path: &'a CgroupPath) -> impl Iterator<Item = PathBuf> + 'a {
        self.hierarchies
            .iter()
            .map(move |h| h.dir.join(path.as_rel_path()))
    }

    /// `path`'s directory in the hierarchy of `controller`.
    fn controller_dir(
        &self,
        path: &CgroupPath,
        controller: &'static str,
        what: &'static str,
    ) -> Result<PathBuf, CgroupError> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.contains(&controller))
            .map(|h| h.dir.join(path.as_rel_path()))
            .ok_or_else(|| CgroupError::NoController {
                what,
                controller,
                path: self.tracking_dir(path),
            })
    }

    fn tracking_dir(&self, path: &CgroupPath) -> PathBuf {
        self.hierarchies[self.tracking].dir.join(path.as_rel_path())
    }

    /// One kill round: through the freezer when we have one, so nothing forks
    /// between listing the pids and killing them.
    fn kill_round(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        let frozen_dir = self
            .freezer
            .map(|i| self.hierarchies[i].dir.join(path.as_rel_path()));
        match frozen_dir {
            Some(dir) if dir.join("freezer.state").is_file() => self.freeze_kill_thaw(path, &dir),
            _ => self.signal_all(path, Signal::SIGKILL).map(drop),
        }
    }

    fn freeze_kill_thaw(&self, path: &CgroupPath, freezer_dir: &Path) -> Result<(), CgroupError> {
        let state = freezer_dir.join("freezer.state");
        fs::write_file(&state, "FROZEN")?;
        let killed = self.kill_frozen(path, freezer_dir, &state);
        // Thaw whatever happened: a frozen task only dies once it runs again,
        // and a cgroup must never be left frozen.
        let thawed = fs::write_file(&state, "THAWED");
        killed.and(thawed)
    }

    fn kill_frozen(
        &self,
        path: &CgroupPath,
        freezer_dir: &Path,
        state: &Path,
    ) -> Result<(), CgroupError> {
        // The state reads FREEZING until every task (in descendants too) stopped.
        let frozen = wait_until(self.timeouts.freeze, || {
            Ok(fs::read_file(state)?.trim() == "FROZEN")
        })?;
        if !frozen {
            tracing::warn!(
                cgroup = %freezer_dir.display(),
                "cgroup did not freeze in {} ms; killing it anyway",
                self.timeouts.freeze.as_millis()
            );
        }
        let mut pids = fs::tree_pids(freezer_dir)?;
        pids.extend(self.pids(path)?);
        pids.sort_unstable();
        pids.dedup();
        signal_pids(&*self.signaller, &pids, Signal::SIGKILL, freezer_dir).map(drop)
    }
}

impl CgroupDriver for V1Driver {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn create(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        self.dirs(path).try_for_each(|dir| fs::mkdir_p(&dir))
    }

    fn procs_files(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.dirs(path)
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    /// `tasks`, not `cgroup.procs`: for a process of one thread, moving the
    /// thread moves the process, and the kernel moves a single thread
    /// without write-locking every thread group of the host
    /// (`cgroup_threadgroup_rwsem`), whose `rcu_sync_enter` waits for an
    /// RCU grace period, milliseconds on a busy host, whenever no
    /// migration happened in the last grace period.
    fn self_placement_files(&self, path: &CgroupPath) -> Vec<PathBuf> {
        self.dirs(path).map(|dir| dir.join("tasks")).collect()
    }

    fn add_pid(&self, path: &CgroupPath, pid: i32) -> Result<(), CgroupError> {
        // Writing 0 would move the caller itself.
        if pid <= 0 {
            return Err(CgroupError::InvalidPid {
                pid,
                path: self.tracking_dir(path),
            });
        }
        let value = pid.to_string();
        self.procs_files(path)
            .iter()
            .try_for_each(|procs| fs::write_file(procs, &value))
    }

    fn probe(&self, path: &CgroupPath) -> Result<CgroupProbe, CgroupError> {
        let oom = self
            .controller_dir(path, "memory", "oom_kill")
            .ok()
            .map(|dir| dir.join("memory.oom_control"));
        CgroupProbe::open(&self.tracking_dir(path), oom)
    }

    fn pids(&self, path: &CgroupPath) -> Result<Vec<i32>, CgroupError> {
        fs::tree_pids(&self.tracking_dir(path))
    }

    fn signal_all(&self, path: &CgroupPath, signal: Signal) -> Result<usize, CgroupError> {
        let pids = self.pids(path)?;
        signal_pids(&*self.signaller, &pids, signal, &self.tracking_dir(path))
    }

    fn kill_all(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        kill_until_empty(
            &self.tracking_dir(path),
            self.timeouts.kill,
            || self.kill_round(path),
            || self.pids(path),
        )
    }

    fn remove(&self, path: &CgroupPath) -> Result<(), CgroupError> {
        // Try every hierarchy even if one fails, so a retry has less left to do.
        let mut first_error = None;
        for dir in self.dirs(path) {
            if let Err(e) = fs::remove_tree(&dir, self.timeouts.remove) {
                tracing::warn!(error = %crate::error_chain::chain(&e), "cannot remove cgroup");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn set_limits(&self, path: &CgroupPath, limits: &Limits) -> Result<(), CgroupError> {
        if let Some(pids) = limits.pids {
            let dir = self.controller_dir(path, "pids", "limits.pids")?;
            fs::write_file(&dir.join("pids.max"), &pids.to_string())?;
        }
        if let Some(bytes) = limits.memory_bytes {
            let dir = self.controller_dir(path, "memory", "limits.memory_bytes")?;
            fs::write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
        }
        if let Some(millis) = limits.cpu_millis {
            let dir = self.controller_dir(path, "cpu", "limits.cpu_millis")?;
            let period = super::limits::CPU_PERIOD_US;
            fs::write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            let quota = Limits::cpu_quota_us(millis);
            fs::write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        Ok(())
    }

    fn oom_kills(&self, path: &CgroupPath) -> Result<u64, CgroupError> {
        match self.controller_dir(path, "memory", "oom_kill") {
            Ok(dir) => fs::read_counter(&dir.join("memory.oom_control"), "oom_kill"),
            Err(_) => Ok(0),
        }
    }

    fn has_controller(&self, controller: &str) -> bool {
        self.hierarchies
            .iter()
            .any(|h| h.controllers.contains(&controller))
    }

    fn exists(&self, path: &CgroupPath) -> bool {
        self.dirs(path).any(|dir| dir.is_dir())
    }

    fn children(&self, path: &CgroupPath) -> Result<Vec<String>, CgroupError> {
        let mut names = Vec::new();
        for dir in self.dirs(path) {
            names.extend(fs::child_names(&dir)?);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::signal::RecordingSignaller;
    use std::fs as stdfs;
    use std::time::Duration;
    use tempfile::TempDir;

    fn fixture(controllers: &[&str]) -> TempDir {
        let root = TempDir::new().expect("tempdir");
        for c in controllers {
            stdfs::create_dir(root.path().join(c)).expect("mkdir");
        }
        root
    }

    fn driver(root: &Path, fake: &Arc<RecordingSignaller>) -> V1Driver {
        V1Driver::detect(root, fake.clone())
            .expect("detect")
            .with_timeouts(Timeouts {
                kill: Duration::from_millis(60),
                freeze: Duration::from_millis(20),
                remove: Duration::from_millis(20),
            })
    }

    fn path(p: &str) -> CgroupPath {
        CgroupPath::new(p).expect("valid path")
    }

    /// Gives cgroup `rel` in hierarchy `controller` the files the kernel would.
    fn populate(root: &Path, controller: &str, rel: &str, procs: &str) {
        let dir = root.join(controller).join(rel);
        stdfs::create_dir_all(&dir).expect("mkdir");
        stdfs::write(dir.join("cgroup.procs"), procs).expect("write");
        if controller == "freezer" {
            stdfs::write(dir.join("freezer.state"), "THAWED\n").expect("write");
        }
    }

    #[test]
    fn detect_orders_hierarchies_and_tracks_with_pids() {
        let root = fixture(&["freezer", "memory", "cpu", "pids", "devices"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        let names: Vec<_> = d
            .hierarchies()
            .iter()
            .flat_map(|h| h.controllers.clone())
            .collect();
        assert_eq!(names, ["pids", "cpu", "memory", "freezer"]);
        assert_eq!(d.tracking_dir(&path("a")), root.path().join("pids/a"));
    }

    #[test]
    fn detect_tracks_with_the_first_hierarchy_without_pids() {
        let root = fixture(&["memory", "cpuacct"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        assert_eq!(d.tracking_dir(&path("a")), root.path().join("cpuacct/a"));
    }

    #[test]
    fn detect_merges_co_mounted_controllers() {
        let root = fixture(&["cpu,cpuacct", "pids"]);
        for link in ["cpu", "cpuacct"] {
            std::os::unix::fs::symlink("cpu,cpuacct", root.path().join(link)).expect("symlink");
        }
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        assert_eq!(d.hierarchies().len(), 2);
        assert_eq!(d.hierarchies()[1].controllers, ["cpu", "cpuacct"]);
        assert_eq!(d.procs_files(&path("x")).len(), 2);
    }

    #[test]
    fn create_makes_the_cgroup_in_every_hierarchy_and_lists_procs_files() {
        let root = fixture(&["pids", "memory", "freezer"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        let p = path("aurae/exec/17");
        assert!(!d.exists(&p));
        d.create(&p).expect("create");
        d.create(&p).expect("create is idempotent");
        for c in ["pids", "memory", "freezer"] {
            assert!(root.path().join(c).join("aurae/exec/17").is_dir(), "{c}");
        }
        assert!(d.exists(&p));
        assert_eq!(
            d.procs_files(&p),
            ["pids", "memory", "freezer"]
                .map(|c| root.path().join(c).join("aurae/exec/17/cgroup.procs"))
        );
        assert_eq!(
            d.self_placement_files(&p),
            ["pids", "memory", "freezer"].map(|c| root.path().join(c).join("aurae/exec/17/tasks"))
        );
    }

    #[test]
    fn add_pid_writes_the_pid_into_every_hierarchy() {
        let root = fixture(&["pids", "memory"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        for c in ["pids", "memory"] {
            populate(root.path(), c, "a", "");
        }
        d.add_pid(&path("a"), 4242).expect("add");
        for c in ["pids", "memory"] {
            let procs =
                stdfs::read_to_string(root.path().join(c).join("a/cgroup.procs")).expect("read");
            assert_eq!(procs, "4242", "{c}");
        }
        let err = d.add_pid(&path("a"), 0).expect_err("pid 0");
        assert!(
            matches!(err, CgroupError::InvalidPid { pid: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn pids_come_from_the_tracking_hierarchy_recursively() {
        let root = fixture(&["pids", "memory"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        populate(root.path(), "pids", "a", "10\n");
        populate(root.path(), "pids", "a/b", "12\n11\n");
        populate(root.path(), "memory", "a", "99\n");
        assert_eq!(d.pids(&path("a")).expect("pids"), [10, 11, 12]);
        assert_eq!(d.pids(&path("missing")).expect("pids"), Vec::<i32>::new());
    }

    #[test]
    fn signal_all_signals_each_pid_of_the_tree() {
        let root = fixture(&["pids"]);
        let fake = Arc::new(RecordingSignaller::with_gone(&[11]));
        let d = driver(root.path(), &fake);
        populate(root.path(), "pids", "a", "10\n");
        populate(root.path(), "pids", "a/b", "11\n12\n");
        assert_eq!(
            d.signal_all(&path("a"), Signal::SIGTERM).expect("signal"),
            2
        );
        assert_eq!(fake.sent(), [(10, Signal::SIGTERM), (12, Signal::SIGTERM)]);
    }

    #[test]
    fn kill_all_freezes_kills_then_thaws() {
        let root = fixture(&["pids", "freezer"]);
        let fake = Arc::new(RecordingSignaller::new());
        let d = driver(root.path(), &fake);
        populate(root.path(), "pids", "a", "10\n");
        populate(root.path(), "freezer", "a", "10\n");
        // Nothing dies in a fixture, so the bounded loop must give up.
        let err = d.kill_all(&path("a")).expect_err("fixture pids never exit");
        assert!(
            matches!(&err, CgroupError::KillTimeout { pids, .. } if *pids == [10]),
            "{err}"
        );
        assert!(err.to_string().contains("pids/a"), "{err}");
        let sent = fake.sent();
        assert!(
            !sent.is_empty() && sent.iter().all(|s| *s == (10, Signal::SIGKILL)),
            "{sent:?}"
        );
        let state =
            stdfs::read_to_string(root.path().join("freezer/a/freezer.state")).expect("read");
        assert_eq!(state, "THAWED", "never left frozen");
    }

    #[test]
    fn kill_all_without_freezer_kills_in_a_loop() {
        let root = fixture(&["pids"]);
        let fake = Arc::new(RecordingSignaller::new());
        let d = driver(root.path(), &fake);
        populate(root.path(), "pids", "a", "10\n");
        d.kill_all(&path("a")).expect_err("fixture pids never exit");
        let sent = fake.sent();
        assert!(sent.len() >= 2, "kills again each round: {sent:?}");
        assert!(sent.iter().all(|s| *s == (10, Signal::SIGKILL)));
    }

    #[test]
    fn kill_all_of_an_empty_or_missing_cgroup_is_ok() {
        let root = fixture(&["pids", "freezer"]);
        let fake = Arc::new(RecordingSignaller::new());
        let d = driver(root.path(), &fake);
        populate(root.path(), "pids", "a", "");
        d.kill_all(&path("a")).expect("empty");
        d.kill_all(&path("missing")).expect("missing");
        assert!(fake.sent().is_empty());
    }

    #[test]
    fn remove_rmdirs_deepest_first_in_every_hierarchy() {
        let root = fixture(&["pids", "memory"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        let p = path("top");
        // Bare directories: rmdir sees them empty, as it sees a real cgroup.
        for leaf in ["top/a/b", "top/c"] {
            d.create(&path(leaf)).expect("create");
        }
        assert_eq!(d.children(&p).expect("children"), ["a", "c"]);
        d.remove(&p).expect("remove");
        assert!(!d.exists(&p));
        assert!(root.path().join("pids").is_dir(), "hierarchy root stays");
        d.remove(&p).expect("removing a missing cgroup is ok");
        assert_eq!(d.children(&p).expect("children"), Vec::<String>::new());
    }

    #[test]
    fn remove_reports_a_directory_that_is_not_empty() {
        let root = fixture(&["pids", "memory"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        d.create(&path("a")).expect("create");
        // A regular file: something a real cgroup cannot contain.
        stdfs::write(root.path().join("pids/a/stray"), "").expect("write");
        let err = d.remove(&path("a")).expect_err("not empty");
        assert!(err.to_string().contains("pids/a"), "{err}");
        assert!(
            !root.path().join("memory/a").exists(),
            "other hierarchies still removed"
        );
    }

    #[test]
    fn set_limits_writes_each_controller_file() {
        let root = fixture(&["pids", "memory", "cpu"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        let files = [
            "pids/a/pids.max",
            "memory/a/memory.limit_in_bytes",
            "cpu/a/cpu.cfs_period_us",
            "cpu/a/cpu.cfs_quota_us",
        ];
        for f in files {
            populate(
                root.path(),
                f.split('/').next().expect("controller"),
                "a",
                "",
            );
            stdfs::write(root.path().join(f), "max\n").expect("write");
        }
        let limits = Limits::from_wire(64, 1 << 20, 500);
        d.set_limits(&path("a"), &limits).expect("set");
        let read = |f: &str| stdfs::read_to_string(root.path().join(f)).expect("read");
        assert_eq!(read(files[0]), "64");
        assert_eq!(read(files[1]), "1048576");
        assert_eq!(read(files[2]), "100000");
        assert_eq!(read(files[3]), "50000");
        assert!(d.has_controller("memory") && !d.has_controller("freezer"));
    }

    #[test]
    fn oom_kills_reads_the_counter_of_memory_oom_control() {
        let root = fixture(&["pids", "memory"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        populate(root.path(), "memory", "a", "");
        assert_eq!(d.oom_kills(&path("a")).expect("no file yet"), 0);
        stdfs::write(
            root.path().join("memory/a/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .expect("write");
        assert_eq!(d.oom_kills(&path("a")).expect("read"), 3);
        stdfs::write(
            root.path().join("memory/a/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill lots\n",
        )
        .expect("write");
        assert!(matches!(
            d.oom_kills(&path("a")),
            Err(CgroupError::Parse { .. })
        ));
        let without = fixture(&["pids"]);
        let d = driver(without.path(), &Arc::new(RecordingSignaller::new()));
        assert_eq!(d.oom_kills(&path("a")).expect("no memory controller"), 0);
    }

    #[test]
    fn set_limits_without_the_controller_says_which() {
        let root = fixture(&["pids"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        populate(root.path(), "pids", "a", "");
        d.set_limits(&path("a"), &Limits::default())
            .expect("nothing to set");
        let err = d
            .set_limits(&path("a"), &Limits::from_wire(0, 1 << 20, 0))
            .expect_err("no memory hierarchy");
        assert!(
            matches!(
                err,
                CgroupError::NoController {
                    controller: "memory",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn children_unites_hierarchies() {
        let root = fixture(&["pids", "memory"]);
        let d = driver(root.path(), &Arc::new(RecordingSignaller::new()));
        stdfs::create_dir_all(root.path().join("pids/aurae/x")).expect("mkdir");
        stdfs::create_dir_all(root.path().join("memory/aurae/y")).expect("mkdir");
        stdfs::write(root.path().join("pids/aurae/cgroup.procs"), "").expect("write");
        assert_eq!(d.children(&path("aurae")).expect("children"), ["x", "y"]);
    }
}
