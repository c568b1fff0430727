//! A VM from an http URL: RunVirtualMachine returns STATUS_ACTIVE with the
//! hypervisor's pid once QEMU runs, the serial console streams from boot,
//! List shows it; a second VM of the same image downloads nothing; a
//! duplicate or bad name is refused; Stop keeps the disk, Start boots it
//! again, Delete leaves no overlay, record, cgroup or QEMU behind.

mod common;
mod vms_support;

use aurae_proto::meta::Status;
use common::alive;
use tonic::Code;
use vms_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_from_a_url_runs_streams_its_console_and_goes_through_its_lifecycle() {
    if !require_vms("vms_must_boot_from_a_url") {
        return;
    }
    let server = FileServer::start(fixtures()).await;
    let d = daemon().await;
    let url = server.url("disk.qcow2");

    let s = run(&d, "web", &url).await.expect("run web");
    assert_eq!(s.status, Status::Active as i32, "{s:?}");
    let pid = pid_of(&s);
    assert!(pid > 0 && alive(pid), "{s:?}");
    assert!(
        vm_pids(&d, "web").contains(&pid),
        "qemu runs in the vm's cgroup"
    );
    let console = console_until(&d, pid, MARKER, 0).await;
    assert!(console.iter().any(|l| l.contains("kernel=")), "{console:?}");

    let listed = list(&d).await;
    let web = listed.get("web").expect("web listed");
    assert_eq!(web.status, Status::Active as i32);
    assert_eq!(listed_pid(web), pid);
    assert_eq!(web.image, url);
    assert!(web.digest.starts_with("sha256:"), "{web:?}");
    assert!(overlay(&d, "web").is_file());
    assert_eq!(server.bodies_sent("disk.qcow2"), 1);

    // The same image again: resolved at the server (304), nothing downloaded.
    let s2 = run(&d, "web2", &url).await.expect("run web2");
    assert_eq!(s2.status, Status::Active as i32);
    assert_eq!(
        server.bodies_sent("disk.qcow2"),
        1,
        "the cached image is reused"
    );
    assert!(
        server
            .not_modified
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(list(&d).await["web2"].digest, web.digest);
    let del = call(&d, Call::Delete, "web2").await.expect("delete web2");
    assert_eq!(del.status, Status::Passive as i32);

    assert_eq!(code(run(&d, "web", &url).await), Code::AlreadyExists);
    assert_eq!(code(run(&d, "../etc", &url).await), Code::InvalidArgument);
    assert_eq!(code(run(&d, "", &url).await), Code::InvalidArgument);

    // Stop: graceful (the test guest powers off on the ACPI button), disk kept.
    let stopped = call(&d, Call::Stop, "web").await.expect("stop");
    assert_eq!(stopped.status, Status::Passive as i32, "{stopped:?}");
    assert!(!alive(pid), "qemu {pid} is gone after Stop");
    assert!(vm_cgroups(&d, "web").is_empty(), "no cgroup after Stop");
    assert!(overlay(&d, "web").is_file(), "Stop keeps the disk");
    let off = console_until(&d, pid, "AURAE-VM-POWEROFF", 0).await;
    assert!(!off.is_empty());
    assert_eq!(list(&d).await["web"].status, Status::Passive as i32);

    // Start: the same overlay boots again.
    let started = call(&d, Call::Start, "web").await.expect("start");
    assert_eq!(started.status, Status::Active as i32, "{started:?}");
    let pid2 = pid_of(&started);
    assert!(pid2 > 0 && pid2 != pid);
    console_until(&d, pid2, MARKER, 0).await;
    assert_eq!(listed_pid(&list(&d).await["web"]), pid2);

    // Delete: nothing of it is left.
    let deleted = call(&d, Call::Delete, "web").await.expect("delete");
    assert_eq!(deleted.status, Status::Passive as i32);
    assert!(!alive(pid2));
    assert!(qemus(&d, "web").is_empty());
    assert!(vm_cgroups(&d, "web").is_empty());
    assert!(!overlay(&d, "web").exists());
    assert!(!overlay(&d, "web").parent().expect("dir").exists());
    assert!(list(&d).await.is_empty());
    let gone = call(&d, Call::Stop, "web").await.expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
}
