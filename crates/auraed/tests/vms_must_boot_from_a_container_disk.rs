//! A VM from a containerDisk in the test registry (hack/push-vm-disk.sh):
//! pulled through the image store (streamed, digest-verified), its one disk
//! file under /disk/ booted on an overlay; an image without a disk is
//! refused and leaves nothing behind.

mod common;
mod vms_support;

use aurae_proto::meta::Status;
use common::{require_registry, REGISTRY};
use tonic::Code;
use vms_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_disk_from_the_registry_boots_to_its_console_marker() {
    if !require_vms("vms_must_boot_from_a_container_disk")
        || !require_registry("vms_must_boot_from_a_container_disk")
    {
        return;
    }
    let d = daemon().await;
    let image = format!("{REGISTRY}/aurae/vm-disk:latest");
    let s = run(&d, "cd", &image)
        .await
        .expect("run from a containerDisk");
    assert_eq!(s.status, Status::Active as i32, "{s:?}");
    let pid = pid_of(&s);
    console_until(&d, pid, MARKER, 0).await;
    let listed = list(&d).await.remove("cd").expect("listed");
    assert_eq!(listed.image, image);
    assert!(listed.digest.starts_with("sha256:"), "{listed:?}");
    assert_eq!(listed_pid(&listed), pid);

    let e = run(&d, "nodisk", &format!("{REGISTRY}/aurae/busybox:latest"))
        .await
        .expect_err("no disk");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("/disk/"), "{}", e.message());
    assert!(!overlay(&d, "nodisk").parent().expect("dir").exists());
    assert!(vm_cgroups(&d, "nodisk").is_empty());
    let e = run(
        &d,
        "missing",
        &format!("{REGISTRY}/aurae/no-such-disk:latest"),
    )
    .await
    .expect_err("unknown image");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    call(&d, Call::Delete, "cd").await.expect("delete");
    assert!(qemus(&d, "cd").is_empty());
    assert!(list(&d).await.is_empty());
}
