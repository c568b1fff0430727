//! Cell and container limits through a real daemon: the cgroup files hold
//! the values (the daemon's default pids limit included), List and
//! `aer cell ps` show them, bad ones are refused before anything exists, a
//! memory hog ends "OOM killed" (exit 137), a fork bomb stops at the default
//! pids limit while the daemon serves on, and a CPU limit throttles (the
//! kernel's own cpu.stat counters, not timing).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// common/ and cells_support/ both include the registry fixture by path.
#![allow(clippy::duplicate_mod)]

mod cells_support;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use aurae_client::Client;
use aurae_proto::cells::RunningCell;
use aurae_proto::meta::Status;
use aurae_proto::runtime::{Cell, CellStatus, Limits};
use cells_support::{cell, push_derived, ImageSpec};
use common::aer::{aer, running_pid};
use common::{eventually, require_registry, TestDaemon};
use tokio::task::JoinHandle;
use tonic::Code;

fn v2_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of `<cell>[/<container>]`'s cgroup in `controller`'s
/// hierarchy (v1) or in the one v2 tree.
fn cgroup_dir(d: &TestDaemon, controller: &str, cell: &str, container: Option<&str>) -> PathBuf {
    let mount = if v2_host() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup").join(controller)
    };
    let mut dir = mount
        .join(d.cgroup_root())
        .join("cells")
        .join(format!("{cell}.scope"));
    if let Some(c) = container {
        dir.push(format!("{c}.scope"));
    }
    dir
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn limits(pids: u64, memory_bytes: u64, cpu_millis: u64) -> Option<Limits> {
    Some(Limits {
        cpu_millis,
        memory_bytes,
        pids,
    })
}

fn start(c: &Client, cell: Cell) -> JoinHandle<Result<CellStatus, aurae_client::ClientError>> {
    let c = c.clone();
    tokio::spawn(async move { c.run_cell(cell).await })
}

async fn listed(c: &Client, name: &str) -> RunningCell {
    c.list_cells()
        .await
        .expect("List")
        .cells
        .into_iter()
        .find(|x| x.meta.as_ref().is_some_and(|m| m.name == name))
        .expect("listed")
}

/// Stops cell `name` and returns its RunCell answer.
async fn stop(
    c: &Client,
    name: &str,
    run: JoinHandle<Result<CellStatus, aurae_client::ClientError>>,
) -> CellStatus {
    c.stop_cell(name.to_string()).await.expect("Stop");
    run.await.expect("task").expect("RunCell")
}

#[tokio::test]
async fn limits_must_reach_the_cgroups_show_in_list_and_be_checked_first() {
    if !require_registry("limits_must_reach_the_cgroups_show_in_list_and_be_checked_first") {
        return;
    }
    let sleeper = push_derived("limits-sleeper", "v1", &ImageSpec::sh("exec sleep 1000")).await;
    let d = TestDaemon::start().await;
    let c = d.client().await;

    let mut spec = cell("lim", &[("a", &sleeper), ("b", &sleeper)]);
    spec.limits = limits(0, 256 << 20, 1500);
    spec.containers[0].limits = limits(100, 64 << 20, 500);
    let run = start(&c, spec);
    running_pid(&c, "lim", "a").await;
    running_pid(&c, "lim", "b").await;

    // List: the cell's limits in force (the default pids.max included);
    // each container's own, else the cell's.
    let cell_listed = listed(&c, "lim").await;
    assert_eq!(cell_listed.limits, limits(4096, 256 << 20, 1500));
    assert_eq!(cell_listed.containers[0].limits, limits(100, 64 << 20, 500));
    assert_eq!(
        cell_listed.containers[1].limits,
        limits(4096, 256 << 20, 1500)
    );

    // The files the kernel enforces.
    let pids = cgroup_dir(&d, "pids", "lim", None);
    let memory = cgroup_dir(&d, "memory", "lim", None);
    let cpu = cgroup_dir(&d, "cpu", "lim", None);
    let a = |controller| cgroup_dir(&d, controller, "lim", Some("a"));
    let b = |controller| cgroup_dir(&d, controller, "lim", Some("b"));
    assert_eq!(read(&pids, "pids.max"), "4096");
    assert_eq!(read(&a("pids"), "pids.max"), "100");
    assert_eq!(read(&b("pids"), "pids.max"), "max");
    if v2_host() {
        assert_eq!(read(&memory, "memory.max"), "268435456");
        assert_eq!(read(&a("memory"), "memory.max"), "67108864");
        assert_eq!(read(&cpu, "cpu.max"), "150000 100000");
        assert_eq!(read(&a("cpu"), "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read(&memory, "memory.limit_in_bytes"), "268435456");
        assert_eq!(read(&a("memory"), "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "150000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&a("cpu"), "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&b("cpu"), "cpu.cfs_quota_us"), "-1");
    }

    // aer cell ps shows them.
    let out = aer(&d, &["cell", "ps"]).output().expect("aer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("limits pids=4096 memory=256M cpu=1500"),
        "{text}"
    );
    assert!(
        text.contains("limits pids=100 memory=64M cpu=500"),
        "{text}"
    );

    let status = stop(&c, "lim", run).await;
    assert_eq!(
        status.container_statuses[0].limits,
        limits(100, 64 << 20, 500)
    );
    assert!(!status.container_statuses[0].oom_killed);

    // Refused with a message that says what to change, before anything exists.
    let mut above = cell("above", &[("a", &sleeper)]);
    above.limits = limits(0, 64 << 20, 0);
    above.containers[0].limits = limits(0, 128 << 20, 0);
    let mut tiny_cpu = cell("tiny", &[("a", &sleeper)]);
    tiny_cpu.limits = limits(0, 0, 5);
    let mut above_default = cell("fork", &[("a", &sleeper)]);
    above_default.containers[0].limits = limits(5000, 0, 0);
    for (bad, needle) in [
        (
            above,
            "container \"a\": limits.memory_bytes 134217728 is above the cell's 67108864: lower it, or raise the cell's limits.memory_bytes",
        ),
        (
            tiny_cpu,
            "cell \"tiny\": limits.cpu_millis is 5: give 10 to 1000000, or 0 for the daemon's default",
        ),
        (
            above_default,
            "is above the cell's 4096 (the daemon's default, --default-pids-max)",
        ),
    ] {
        let err = c.run_cell(bad).await.expect_err("refused");
        let err = err.status().expect("a status").clone();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
    assert!(
        eventually(10, || common::cgroups_under(&d, "cells").is_empty()).await,
        "{:?}",
        common::cgroups_under(&d, "cells")
    );
}

#[tokio::test]
async fn a_memory_hog_must_end_oom_killed() {
    if !require_registry("a_memory_hog_must_end_oom_killed") {
        return;
    }
    // tail keeps its last "line" in memory: /dev/zero has no newline.
    let hog = push_derived(
        "limits-hog",
        "v1",
        &ImageSpec::sh("echo eating; exec busybox tail /dev/zero"),
    )
    .await;
    let d = TestDaemon::start().await;
    let c = d.client().await;

    // A container's own limit.
    let mut spec = cell("hog", &[("hog", &hog)]);
    spec.containers[0].limits = limits(0, 32 << 20, 0);
    let status = c.run_cell(spec).await.expect("RunCell");
    let hogged = &status.container_statuses[0];
    assert_eq!(hogged.status, Status::Error as i32, "{status:?}");
    assert_eq!(
        hogged.meta.as_ref().map(|m| m.message.as_str()),
        Some("OOM killed")
    );
    assert_eq!(hogged.exit_code, Some(137));
    assert!(hogged.oom_killed);

    // The whole cell's limit, from aer: the kill is counted in the
    // container's cgroup, and aer says so and exits 137 as docker run does.
    let out = aer(&d, &["cell", "run", "--memory", "32M", "hog2", &hog])
        .output()
        .expect("aer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("STATUS_ERROR  OOM killed"), "{stderr}");
    assert!(
        stderr.contains("container cells-test-limits-hog exited with code 137 (OOM killed)"),
        "{stderr}"
    );
    assert!(
        eventually(10, || common::cgroups_under(&d, "cells").is_empty()).await,
        "the counter was read, then the cgroups removed"
    );
}

#[tokio::test]
async fn a_fork_bomb_in_a_cell_must_stop_at_the_default_pids_max() {
    if !require_registry("a_fork_bomb_in_a_cell_must_stop_at_the_default_pids_max") {
        return;
    }
    // Forks sleepers until the kernel refuses (the subshell then dies of
    // it), then execs without forking, so the cell stays full.
    let bomb = push_derived(
        "limits-bomb",
        "v1",
        &ImageSpec::sh("(while :; do sleep 60 & done) 2>/dev/null; exec sleep 60"),
    )
    .await;
    let d = TestDaemon::builder()
        .arg("--default-pids-max")
        .arg("50")
        .start()
        .await;
    let c = d.client().await;
    let run = start(&c, cell("bomb", &[("bomb", &bomb)]));
    let pids = cgroup_dir(&d, "pids", "bomb", None);
    // v1 counts a refused fork in the forking cgroup, v2 where the limit is.
    let refused = || {
        [pids.clone(), cgroup_dir(&d, "pids", "bomb", Some("bomb"))]
            .iter()
            .filter_map(|dir| std::fs::read_to_string(dir.join("pids.events")).ok())
            .any(|e| e.trim() != "max 0")
    };
    assert!(
        eventually(30, refused).await,
        "the kernel refused the bomb's forks"
    );
    assert_eq!(read(&pids, "pids.max"), "50");
    let tasks: usize = read(&pids, "pids.current").parse().expect("a number");
    // The forking subshell died of the refusal: its sleepers stay.
    assert!((40..=50).contains(&tasks), "{tasks} tasks");

    // The daemon answers and runs other workloads meanwhile.
    tokio::time::timeout(Duration::from_secs(10), c.status())
        .await
        .expect("Status answers during the fork bomb")
        .expect("Status");
    assert_eq!(listed(&c, "bomb").await.limits, limits(50, 0, 0));
    let echo = push_derived("limits-echo", "v1", &ImageSpec::sh("echo fine")).await;
    let other = cell("other", &[("a", &echo)]);
    let status = tokio::time::timeout(Duration::from_secs(60), c.run_cell(other))
        .await
        .expect("RunCell answers during the fork bomb")
        .expect("RunCell");
    assert_eq!(status.container_statuses[0].exit_code, Some(0));

    stop(&c, "bomb", run).await;
    assert!(
        eventually(10, || common::cgroups_under(&d, "cells").is_empty()).await,
        "{:?}",
        common::cgroups_under(&d, "cells")
    );
}

/// `nr_throttled` and the throttled time (v1 ns, v2 µs) of a cpu.stat.
fn throttling(dir: &std::path::Path) -> (u64, u64) {
    let stat = read(dir, "cpu.stat");
    let value = |key: &str| {
        stat.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let time = if v2_host() {
        "throttled_usec "
    } else {
        "throttled_time "
    };
    (value("nr_throttled "), value(time))
}

#[tokio::test]
async fn a_cpu_limit_must_throttle() {
    if !require_registry("a_cpu_limit_must_throttle") {
        return;
    }
    let spinner = push_derived("limits-spin", "v1", &ImageSpec::sh("while :; do :; done")).await;
    let d = TestDaemon::start().await;
    let c = d.client().await;
    let mut spec = cell("spin", &[("spin", &spinner)]);
    spec.limits = limits(0, 0, 100);
    let run = start(&c, spec);
    running_pid(&c, "spin", "spin").await;
    let cpu = cgroup_dir(&d, "cpu", "spin", None);
    // A tenth of a core: the spinner runs out of quota in every period.
    assert!(
        eventually(20, || throttling(&cpu).0 >= 5).await,
        "{:?}",
        throttling(&cpu)
    );
    let (periods, time) = throttling(&cpu);
    assert!(time > 0, "throttled for some time: {periods} periods");
    stop(&c, "spin", run).await;
}
