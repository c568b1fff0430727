//! `--stop-workloads-at-exit` (a node being drained): at SIGTERM the daemon
//! powers its VMs off through the ACPI button before it exits; the next
//! daemon lists them STATUS_PASSIVE and leaves them off until Start.

mod common;
mod vms_support;

use aurae_proto::meta::Status;
use common::alive;
use vms_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_must_stop_gracefully_with_the_daemon_when_asked() {
    if !require_vms("vms_must_stop_with_the_daemon_when_asked") {
        return;
    }
    let server = FileServer::start(fixtures()).await;
    let mut d = daemon_builder()
        .arg("--stop-workloads-at-exit")
        .start()
        .await;
    let s = run(&d, "drained", &server.url("disk.qcow2"))
        .await
        .expect("run");
    let pid = pid_of(&s);
    // The guest watches its power button once it is up.
    console_until(&d, pid, "uptime=5s", 0).await;

    let exit = d.stop().expect("daemon exit");
    assert!(exit.success(), "{exit:?}\n{}", d.log());
    assert!(!alive(pid), "qemu {pid} is gone when the daemon has exited");
    assert!(qemus(&d, "drained").is_empty());

    d.restart().await;
    let v = list(&d).await.remove("drained").expect("still listed");
    assert_eq!(v.status, Status::Passive as i32, "{v:?}");
    assert_eq!(listed_pid(&v), 0);
    // Graceful: the guest saw the power button (its console says so), the
    // daemon did not have to quit or kill the hypervisor.
    let lines = console_until(&d, pid, "AURAE-VM-POWEROFF", 0).await;
    assert!(lines.iter().any(|l| l.contains(MARKER)), "{lines:?}");
    assert!(
        !d.log().contains("the guest ignored the power button"),
        "{}",
        d.log()
    );
    // It stays off across the restart, and Start boots it again.
    let s = call(&d, Call::Start, "drained").await.expect("start");
    console_until(&d, pid_of(&s), MARKER, 0).await;
    call(&d, Call::Delete, "drained").await.expect("delete");
    assert!(qemus(&d, "drained").is_empty());
}
