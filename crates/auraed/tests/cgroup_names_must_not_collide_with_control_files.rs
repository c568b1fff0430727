//! Workload names that are also the names of cgroup interface files
//! (`tasks`, `pids.max`, `cgroup.procs`, ...) run, are scheduled and are
//! destroyed like any other name, leaving no cgroup behind.

mod common;
mod schedule_support;

use std::collections::BTreeSet;
use std::path::Path;

use aurae_proto::meta::Status;
use common::{cgroups_under, exec_cgroups, require_root, TestDaemon};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use schedule_support::{exe as unit, named, parse, schedule_pids};

/// Interface files of cgroup v2 controllers this host may not offer
/// (its controllers are bound to v1), as the kernel documents them.
const V2_FILES: &[&str] = &[
    "cgroup.controllers",
    "cgroup.events",
    "cgroup.freeze",
    "cgroup.kill",
    "cgroup.max.depth",
    "cgroup.max.descendants",
    "cgroup.pressure",
    "cgroup.procs",
    "cgroup.stat",
    "cgroup.subtree_control",
    "cgroup.threads",
    "cgroup.type",
    "cpu.idle",
    "cpu.max",
    "cpu.max.burst",
    "cpu.pressure",
    "cpu.stat",
    "cpu.uclamp.max",
    "cpu.uclamp.min",
    "cpu.weight",
    "cpu.weight.nice",
    "cpuset.cpus",
    "cpuset.cpus.effective",
    "cpuset.cpus.partition",
    "cpuset.mems",
    "cpuset.mems.effective",
    "io.max",
    "io.pressure",
    "io.stat",
    "io.weight",
    "memory.current",
    "memory.events",
    "memory.events.local",
    "memory.high",
    "memory.low",
    "memory.max",
    "memory.min",
    "memory.oom.group",
    "memory.peak",
    "memory.pressure",
    "memory.reclaim",
    "memory.stat",
    "memory.swap.current",
    "memory.swap.events",
    "memory.swap.high",
    "memory.swap.max",
    "memory.zswap.current",
    "memory.zswap.max",
    "pids.current",
    "pids.events",
    "pids.max",
    "pids.peak",
    "hugetlb.2MB.max",
    "misc.max",
    "rdma.max",
];

/// The regular files directly in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every interface-file name this host's kernel shows: in each v1
/// hierarchy's root, and in the root and a child of a private cgroup2
/// mount; plus the documented v2 controller files.
fn control_file_names() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = V2_FILES.iter().map(|s| s.to_string()).collect();
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .expect("/sys/fs/cgroup")
        .flatten()
    {
        names.extend(files_in(&entry.path()));
    }
    names.extend(files_in(Path::new("/sys/fs/cgroup")));
    let dir = tempfile::TempDir::new().expect("tempdir");
    mount(
        Some("none"),
        dir.path(),
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .expect("mount a private cgroup2");
    names.extend(files_in(dir.path()));
    let child = dir
        .path()
        .join(format!("aurae-names-{}", std::process::id()));
    std::fs::create_dir(&child).expect("mkdir in cgroup2");
    names.extend(files_in(&child));
    std::fs::remove_dir(&child).expect("rmdir in cgroup2");
    umount2(dir.path(), MntFlags::MNT_DETACH).expect("umount");
    for must in [
        "tasks",
        "notify_on_release",
        "cgroup.clone_children",
        "memory.limit_in_bytes",
    ] {
        assert!(names.contains(must), "{must} is among {names:?}");
    }
    // Names the daemon refuses anyway (too long, a leading dot) are not workload names.
    names.retain(|n| n.len() <= 64 && !n.starts_with('.'));
    names
}

#[tokio::test]
async fn cgroup_names_must_not_collide_with_control_files() {
    if !require_root("cgroup_names_must_not_collide_with_control_files") {
        return;
    }
    let names = control_file_names();
    eprintln!("{} control-file names: {names:?}", names.len());
    let d = TestDaemon::start().await;
    let client = d.client().await;
    for name in &names {
        let r = client
            .run_executable(unit(name, "true"))
            .await
            .unwrap_or_else(|e| panic!("RunExecutable named {name:?}: {e:?}"));
        assert_eq!(r.status, Status::Complete as i32, "{name}: {r:?}");
        assert_eq!(r.exit_code, "0", "{name}: {r:?}");

        let enabled = client
            .enable(unit(name, "sleep 8300001"))
            .await
            .unwrap_or_else(|e| panic!("Enable {name:?}: {e:?}"));
        let line = parse(&enabled.meta.expect("meta").message);
        assert_eq!(line.status, "STATUS_ACTIVE", "{name}: {line:?}");
        assert!(line.pid > 0 && line.error.is_none(), "{name}: {line:?}");
        let destroyed = client
            .destroy(named(name))
            .await
            .unwrap_or_else(|e| panic!("Destroy {name:?}: {e:?}"))
            .meta
            .expect("meta")
            .message;
        // Stopped gracefully: the workload does not inherit the monitor's ignored SIGTERM.
        assert!(destroyed.contains("SIGTERM"), "{name}: {destroyed}");
    }
    assert!(
        common::eventually(10, || exec_cgroups(&d).is_empty()).await,
        "{:?}",
        exec_cgroups(&d)
    );
    assert!(
        common::eventually(10, || cgroups_under(&d, "schedule").is_empty()).await,
        "left behind: {:?}",
        cgroups_under(&d, "schedule")
    );
    assert!(schedule_pids(&d).is_empty());
    assert!(schedule_support::enabled(&d).await.is_empty());
}
