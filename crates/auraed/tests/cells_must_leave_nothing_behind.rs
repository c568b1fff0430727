//! A RunCell whose caller goes away (client cancel, deadline: the future is
//! dropped) kills the whole cell and removes every trace: processes, cgroup
//! directories in every hierarchy, mounts, bundle directories, libcontainer
//! state. A daemon restart removes what a crashed daemon left.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cells_support;

use std::path::Path;
use std::time::Duration;

use aurae_proto::meta::Status as MetaStatus;
use cells_support::{alive, cell, eventually, fixture, push_derived, Harness, ImageSpec};

#[tokio::test]
async fn cells_must_leave_nothing_behind_when_the_call_is_dropped() {
    if !fixture("cells_must_leave_nothing_behind_when_the_call_is_dropped") {
        return;
    }
    // A shell with children in each container: every process must go.
    let image = push_derived(
        "cancel",
        "v1",
        &ImageSpec::sh("sleep 1000 & sleep 1000 & echo started; wait"),
    )
    .await;
    let h = Harness::with_grace("cancel", Duration::from_millis(500));
    let cells = h.cells.clone();
    let req = cell("cancel", &[("a", &image), ("b", &image)]);
    let call = tokio::spawn(async move { cells.run(req).await });
    assert!(
        eventually(30, || h.pids("cancel").len() == 6).await,
        "two shells and four sleeps: {:?}",
        h.pids("cancel")
    );
    let pids = h.pids("cancel");
    let dir = h.cell_dir("cancel");
    assert!(
        dir.join("state").is_dir(),
        "libcontainer state under the cell"
    );
    assert!(!h.traces("cancel").is_empty());

    call.abort();
    let _ = call.await;
    assert!(
        eventually(15, || pids.iter().all(|p| !alive(*p))).await,
        "processes left: {:?}",
        pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
    );
    assert!(
        eventually(15, || h.traces("cancel").is_empty()).await,
        "left behind: {:?}",
        h.traces("cancel")
    );
    assert!(
        eventually(5, || h.cells.list().is_empty()).await,
        "the name is free again"
    );
    // Namespace files, root filesystems and state all lived under the directory.
    assert!(!dir.exists());
}

#[tokio::test]
async fn cells_must_leave_nothing_behind_after_a_deadline() {
    if !fixture("cells_must_leave_nothing_behind_after_a_deadline") {
        return;
    }
    let image = push_derived("deadline", "v1", &ImageSpec::sh("sleep 1000")).await;
    let h = Harness::with_grace("deadline", Duration::from_millis(200));
    let result = tokio::time::timeout(
        Duration::from_secs(3),
        h.cells.run(cell("deadline", &[("a", &image)])),
    )
    .await;
    assert!(result.is_err(), "the deadline passed first");
    assert!(
        eventually(15, || h.traces("deadline").is_empty()
            && h.cells.list().is_empty())
        .await,
        "left behind: {:?}",
        h.traces("deadline")
    );
}

#[tokio::test]
async fn cells_must_stop_every_cell_at_shutdown() {
    if !fixture("cells_must_stop_every_cell_at_shutdown") {
        return;
    }
    let image = push_derived("shutdown", "v1", &ImageSpec::sh("sleep 1000")).await;
    let h = Harness::with_grace("shutdown", Duration::from_millis(200));
    let cells = h.cells.clone();
    let run = tokio::spawn(async move { cells.run(cell("shut", &[("a", &image)])).await });
    assert!(
        eventually(30, || h.cells.list().iter().any(|c| c
            .containers
            .iter()
            .all(|s| s.status == MetaStatus::Active as i32)))
        .await
    );
    h.cells.shutdown().await;
    let status = run.await.expect("join").expect("run");
    assert_eq!(status.status, MetaStatus::Complete as i32, "{status:?}");
    assert!(h.traces("shut").is_empty(), "{:?}", h.traces("shut"));
    let err = h
        .cells
        .run(cell("late", &[("a", cells_support::BUSYBOX)]))
        .await
        .expect_err("refused after shutdown");
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

/// What a crashed daemon leaves: a cgroup with a live process, a mount and a
/// directory under `<runtime_dir>/cells`. `clean_leftovers` removes it all.
#[tokio::test]
async fn cells_must_clean_what_a_crashed_daemon_left() {
    if !fixture("cells_must_clean_what_a_crashed_daemon_left") {
        return;
    }
    let h = Harness::new("leftovers");
    let ghost = h.parent.workload("ghost").unwrap();
    let leaf = ghost.workload("app").unwrap();
    h.driver.create(&leaf).unwrap();
    let mut sleeper = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let pid = i32::try_from(sleeper.id()).unwrap();
    h.driver.add_pid(&leaf, pid).unwrap();
    let rootfs = h.cell_dir("ghost").join("containers/app/rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &rootfs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(rootfs.join("file"), "x").unwrap();
    std::fs::create_dir_all(h.cell_dir("ghost").join("state/app")).unwrap();
    // A cgroup-only leftover too (the directory already gone).
    let other = h.parent.workload("orphan").unwrap();
    h.driver.create(&other).unwrap();
    assert!(!h.traces("ghost").is_empty());

    h.cells.clean_leftovers();
    let status = sleeper.wait().unwrap();
    assert!(
        !status.success(),
        "the leftover process was killed: {status:?}"
    );
    assert!(h.traces("ghost").is_empty(), "{:?}", h.traces("ghost"));
    assert!(h.traces("orphan").is_empty(), "{:?}", h.traces("orphan"));
    assert!(!Path::new(&h.cell_dir("ghost")).exists());
}
