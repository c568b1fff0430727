//! VMs outlive the daemon: SIGTERM and kill -9 of auraed leave QEMU running,
//! the restarted daemon lists the VM with the same pid and its console keeps
//! streaming; a QEMU killed from outside is booted again; a guest that
//! powers itself off is STATUS_COMPLETE and stays off.

mod common;
mod vms_support;

use std::time::Duration;

use aurae_proto::meta::Status;
use common::{alive, eventually};
use vms_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_survive_restarts_and_crashes_of_the_daemon_and_of_qemu() {
    if !require_vms("vms_must_outlive_the_daemon") {
        return;
    }
    let server = FileServer::start(fixtures()).await;
    let mut d = daemon().await;

    let s = run(&d, "keep", &server.url("disk.qcow2"))
        .await
        .expect("run keep");
    let pid = pid_of(&s);
    console_until(&d, pid, "uptime=5s", 0).await;

    // SIGTERM: the daemon exits, the VM does not.
    let exit = d.stop().expect("daemon exit");
    assert!(exit.success(), "{exit:?}");
    assert!(alive(pid), "qemu {pid} survives a graceful daemon exit");
    d.restart().await;
    let keep = list(&d).await.remove("keep").expect("listed after restart");
    assert_eq!(keep.status, Status::Active as i32, "{keep:?}");
    assert_eq!(listed_pid(&keep), pid, "the same hypervisor is adopted");
    // Lines from before the restart, and new ones written since.
    let lines = console_until(&d, pid, "uptime=20s", 0).await;
    assert!(lines.iter().any(|l| l.contains(MARKER)), "{lines:?}");

    // kill -9: the same.
    d.kill9();
    assert!(alive(pid), "qemu {pid} survives a crash of the daemon");
    d.restart().await;
    let keep = list(&d).await.remove("keep").expect("listed after crash");
    assert_eq!(listed_pid(&keep), pid);
    assert_eq!(keep.status, Status::Active as i32);
    console_until(&d, pid, "uptime=30s", 0).await;

    // QEMU killed from outside: booted again, on the same overlay.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill qemu");
    let mut restarted = 0;
    let deadline = std::time::Instant::now() + BOOT;
    while std::time::Instant::now() < deadline {
        if let Some(v) = list(&d).await.get("keep") {
            let p = listed_pid(v);
            if v.status == Status::Active as i32 && p != 0 && p != pid {
                restarted = p;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(restarted != 0, "qemu was not restarted:\n{}", d.log());
    console_until(&d, restarted, MARKER, 0).await;
    assert!(!alive(pid));

    // A guest that powers off: STATUS_COMPLETE, and it stays off.
    let s = run(&d, "off", &server.url("poweroff.qcow2"))
        .await
        .expect("run off");
    let off_pid = pid_of(&s);
    console_until(&d, off_pid, "AURAE-VM-POWEROFF", 0).await;
    let complete = eventually(60, || !alive(off_pid)).await;
    assert!(complete, "the powered-off guest's qemu exits");
    let mut status = 0;
    for _ in 0..100 {
        status = list(&d).await["off"].status;
        if status == Status::Complete as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Status::Complete as i32, "{}", d.log());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let off = list(&d).await.remove("off").expect("off listed");
    assert_eq!(off.status, Status::Complete as i32, "it stays off");
    assert_eq!(listed_pid(&off), 0);
    assert!(qemus(&d, "off").is_empty(), "not restarted");

    // And a restarted daemon keeps it off.
    d.restart().await;
    let off = list(&d)
        .await
        .remove("off")
        .expect("off listed after restart");
    assert_eq!(off.status, Status::Complete as i32);
    assert!(qemus(&d, "off").is_empty());
}

/// A hypervisor in a VM cgroup without a record (a daemon died while
/// creating the VM) is stopped when the next daemon starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_cgroup_without_a_record_is_stopped_at_start() {
    if !require_vms("vms_must_outlive_the_daemon") {
        return;
    }
    let mut d = daemon().await;
    d.stop();
    let mut ghost = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("sleep");
    let pid = ghost.id();
    let dirs: Vec<_> = common::cgroup_mounts()
        .into_iter()
        .map(|m| m.join(d.cgroup_root()).join("vms/ghost.scope"))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).expect("ghost cgroup");
        std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("move the ghost");
    }
    d.restart().await;
    let gone = eventually(30, || {
        matches!(ghost.try_wait(), Ok(Some(_))) && dirs.iter().all(|p| !p.exists())
    })
    .await;
    assert!(
        gone,
        "the leftover was not stopped and removed:\n{}",
        d.log()
    );
    assert!(list(&d).await.is_empty());
}
