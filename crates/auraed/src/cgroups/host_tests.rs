//! Root-only tests against the host's real cgroup filesystem. Without root
//! they print why and pass, unless CI is set: there they must run.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::signal::NixSignaller;
use super::v2::V2Driver;
use super::{detect_host, CgroupDriver, CgroupPath, HOST_MOUNT_ROOT};

fn have_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test} needs root, and CI is set: run the tests as root there");
    }
    eprintln!("skipping {test}: needs root");
    false
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

/// The brief's scenario: place `sleep 100`, see it, kill it, remove the cgroup.
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
    let top = unique_top("-tree");
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
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = state
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("gone");
        assert!(
            matches!(state, "gone" | "Z" | "X"),
            "pid {pid} is in state {state}"
        );
    }
    driver.remove(&top).expect("remove");
    assert!(!driver.exists(&top));
}

/// The v2 driver on the real kernel, even on a v1 host that has a
/// controller-less v2 mount next to its v1 hierarchies (hybrid layout).
#[test]
fn v2_driver_kills_through_cgroup_kill_and_through_the_freezer() {
    if !have_root("v2_driver_kills_through_cgroup_kill_and_through_the_freezer") {
        return;
    }
    let root = [
        HOST_MOUNT_ROOT.to_string(),
        format!("{HOST_MOUNT_ROOT}/unified"),
    ]
    .into_iter()
    .find(|r| Path::new(r).join("cgroup.controllers").is_file());
    let Some(root) = root else {
        eprintln!("skipping: no cgroup v2 mount on this host");
        return;
    };
    let root = Path::new(&root);
    eprintln!("v2 mount at {}", root.display());
    let with_kill: Arc<dyn CgroupDriver> = Arc::new(V2Driver::new(root, Arc::new(NixSignaller)));
    place_kill_remove(with_kill, unique_top("-v2kill"));
    let with_freezer: Arc<dyn CgroupDriver> =
        Arc::new(V2Driver::new(root, Arc::new(NixSignaller)).without_kill_file());
    place_kill_remove(with_freezer, unique_top("-v2freeze"));
}
