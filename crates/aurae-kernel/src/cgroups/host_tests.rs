//! Root-only tests against the kernel's real cgroup filesystems: the host's
//! own layout (v1 or v2), and the v2 driver on a private cgroup2 mount, so
//! it runs on v1 (hybrid) hosts too. Without root, or where cgroup2 cannot
//! be mounted, they print why and pass, unless CI is set: there they fail.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::Signal;

use super::signal::NixSignaller;
use super::v2::V2Driver;
use super::{detect, detect_host, CgroupDriver, CgroupPath, CgroupVersion};
use crate::test_support::{require_root, skip};

fn have_root(test: &str) -> bool {
    require_root(test, "real cgroups")
}

/// A fresh mount of the kernel's cgroup2 hierarchy on a temp directory,
/// lazily unmounted on drop. On a v1 (hybrid) host it is the same, mostly
/// controller-less hierarchy as /sys/fs/cgroup/unified, so tests keep to
/// their own uniquely named cgroups in it.
struct PrivateCgroup2 {
    dir: tempfile::TempDir,
}

impl PrivateCgroup2 {
    /// The mount, or None after [`skip`]ping `test` (a failure on CI).
    fn mount(test: &str) -> Option<Self> {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        match mount(
            Some("none"),
            dir.path(),
            Some("cgroup2"),
            flags,
            None::<&str>,
        ) {
            Ok(()) => Some(Self { dir }),
            Err(e) => {
                skip(test, &format!("cannot mount cgroup2: {e}"));
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateCgroup2 {
    fn drop(&mut self) {
        if let Err(e) = umount2(self.dir.path(), MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.path().display());
        }
    }
}

/// The process state letter of `pid` (R, S, T, Z, ...), "gone" when it is gone.
fn proc_state(pid: i32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("gone")
        .to_string()
}

fn wait_for_state(pid: i32, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = proc_state(pid);
        if state == want || Instant::now() >= deadline {
            return state;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Kills what a test started and removes its cgroups, even when it fails midway.
struct Cleanup {
    driver: Arc<dyn CgroupDriver>,
    top: CgroupPath,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.driver.kill_all(&self.top);
        let _ = self.driver.remove(&self.top);
    }
}

fn unique_top(what: &str) -> CgroupPath {
    CgroupPath::new(&format!("aurae-unittest-{}{what}", std::process::id())).expect("valid path")
}

fn wait_for_pids(driver: &dyn CgroupDriver, path: &CgroupPath, count: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = driver.pids(path).expect("pids");
        if pids.len() >= count || Instant::now() >= deadline {
            return pids;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Place `sleep 100` through the procs file, see it, stop and continue it
/// with signal_all, kill it, remove the cgroup tree.
fn place_kill_remove(driver: Arc<dyn CgroupDriver>, top: CgroupPath) {
    let leaf = top.join("leaf").expect("valid path");
    let mut guard = Cleanup {
        driver: driver.clone(),
        top: top.clone(),
        child: None,
    };

    driver.create(&leaf).expect("create");
    assert!(driver.exists(&leaf));
    for procs in driver.procs_files(&leaf) {
        assert!(
            procs.is_file(),
            "{} is a kernel file after create",
            procs.display()
        );
    }
    assert_eq!(driver.children(&top).expect("children"), ["leaf"]);

    let child = guard.child.insert(
        Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    driver.add_pid(&leaf, pid).expect("add_pid");
    assert!(driver.pids(&leaf).expect("pids").contains(&pid));
    assert!(
        driver.pids(&top).expect("pids").contains(&pid),
        "pids() descends into children"
    );

    assert_eq!(driver.signal_all(&top, Signal::SIGSTOP).expect("stop"), 1);
    assert_eq!(wait_for_state(pid, "T"), "T", "SIGSTOP reached pid {pid}");
    assert_eq!(driver.signal_all(&top, Signal::SIGCONT).expect("cont"), 1);
    assert_ne!(wait_for_state(pid, "S"), "T", "SIGCONT reached pid {pid}");

    let started = Instant::now();
    driver.kill_all(&top).expect("kill_all");
    eprintln!("{} kill_all took {:?}", driver.version(), started.elapsed());
    let status = child.wait().expect("wait");
    guard.child = None;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(driver.pids(&top).expect("pids"), Vec::<i32>::new());

    driver.remove(&top).expect("remove");
    assert!(!driver.exists(&leaf));
    assert!(!driver.exists(&top));
}

#[test]
fn host_driver_places_kills_and_removes_a_real_process() {
    if !have_root("host_driver_places_kills_and_removes_a_real_process") {
        return;
    }
    let driver = detect_host().expect("detect host cgroups");
    eprintln!("host driver: {driver:?}");
    place_kill_remove(driver, unique_top(""));
}

#[test]
fn host_driver_kills_a_forking_tree_in_nested_cgroups() {
    if !have_root("host_driver_kills_a_forking_tree_in_nested_cgroups") {
        return;
    }
    let driver = detect_host().expect("detect host cgroups");
    kill_a_forking_tree(driver, unique_top("-tree"));
}

/// A shell placed in `top/a/b` forks two sleeps there; kill_all takes all three.
fn kill_a_forking_tree(driver: Arc<dyn CgroupDriver>, top: CgroupPath) {
    let inner = top.join("a").and_then(|p| p.join("b")).expect("valid path");
    let mut guard = Cleanup {
        driver: driver.clone(),
        top: top.clone(),
        child: None,
    };
    driver.create(&inner).expect("create");

    // The shell forks only after the line we send once it is placed, so its
    // children are born inside the cgroup.
    let child = guard.child.insert(
        Command::new("sh")
            .args(["-c", "read go; sleep 100 & sleep 100 & wait"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh"),
    );
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    driver.add_pid(&inner, pid).expect("add_pid");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("release sh");

    let pids = wait_for_pids(&*driver, &top, 3);
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");
    driver.kill_all(&top).expect("kill_all");
    let status = child.wait().expect("wait");
    guard.child = None;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    for pid in pids {
        // The sleeps were reparented away from us; they must be gone (or zombies).
        let state = proc_state(pid);
        assert!(
            matches!(state.as_str(), "gone" | "Z" | "X"),
            "pid {pid} is in state {state}"
        );
    }
    driver.remove(&top).expect("remove");
    assert!(!driver.exists(&top));
}

/// The v2 driver on a real cgroup2 mount of its own, even on a v1 host:
/// once through cgroup.kill, once through the freezer fallback.
#[test]
fn v2_driver_works_on_a_private_cgroup2_mount() {
    let test = "v2_driver_works_on_a_private_cgroup2_mount";
    if !have_root(test) {
        return;
    }
    let Some(mount) = PrivateCgroup2::mount(test) else {
        return;
    };
    let root = mount.path();
    assert!(root.join("cgroup.controllers").is_file(), "a cgroup2 root");
    let detected = detect(root).expect("detect");
    assert_eq!(detected.version(), CgroupVersion::V2);
    let top = unique_top("-v2kill");
    detected.create(&top).expect("create");
    let has_kill = root.join(top.as_str()).join("cgroup.kill").is_file();
    detected.remove(&top).expect("remove");
    eprintln!("cgroup2 at {}, cgroup.kill: {has_kill}", root.display());

    place_kill_remove(detected, top);
    let with_freezer: Arc<dyn CgroupDriver> =
        Arc::new(V2Driver::new(root, Arc::new(NixSignaller)).without_kill_file());
    place_kill_remove(with_freezer, unique_top("-v2freeze"));

    let forking = unique_top("-v2tree");
    let v2: Arc<dyn CgroupDriver> = Arc::new(V2Driver::new(root, Arc::new(NixSignaller)));
    kill_a_forking_tree(v2, forking);
    assert!(
        std::fs::read_dir(root).expect("list").flatten().all(|e| !e
            .file_name()
            .to_string_lossy()
            .contains(&std::process::id().to_string())),
        "every cgroup of this test is gone"
    );
}

/// Creates and removes the workload cgroup of every name in `names`, each
/// a kernel interface-file name, under a fresh top.
fn every_control_file_name_is_a_workload_name(
    driver: &dyn CgroupDriver,
    top: &CgroupPath,
    names: &[String],
) {
    for name in names {
        let path = top.workload(name).expect("valid");
        driver
            .create(&path)
            .unwrap_or_else(|e| panic!("{} {name}: {e}", driver.version()));
        assert!(driver.exists(&path), "{name}");
    }
    let children = driver.children(top).expect("children");
    assert_eq!(children.len(), names.len(), "{children:?}");
    driver.remove(top).expect("remove");
    assert!(!driver.exists(top));
}

/// The regular files a cgroup directory shows.
fn interface_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn workload_cgroups_never_collide_with_interface_files() {
    let test = "workload_cgroups_never_collide_with_interface_files";
    if !have_root(test) {
        return;
    }
    let Some(mount) = PrivateCgroup2::mount(test) else {
        return;
    };
    let host = detect_host().expect("detect host cgroups");
    let v2: Arc<dyn CgroupDriver> = Arc::new(V2Driver::new(mount.path(), Arc::new(NixSignaller)));
    for driver in [host, v2] {
        let top = unique_top(&format!("-names-{}", driver.version()));
        driver.create(&top).expect("create top");
        // What the kernel shows in a cgroup of this very driver, plus the
        // controller files this host binds to v1.
        let dir = driver.procs_files(&top)[0]
            .parent()
            .expect("dir")
            .to_path_buf();
        let mut names = interface_files(&dir);
        for extra in [
            "pids.max",
            "memory.max",
            "cpu.max",
            "tasks",
            "cgroup.kill",
            "memory.limit_in_bytes",
        ] {
            names.push(extra.to_string());
        }
        names.sort();
        names.dedup();
        assert!(names.iter().any(|n| n == "cgroup.procs"), "{names:?}");
        every_control_file_name_is_a_workload_name(&*driver, &top, &names);
    }
}
