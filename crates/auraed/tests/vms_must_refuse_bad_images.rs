//! A disk image that cannot be fetched or is not a disk gives a clear error
//! with the right code, and leaves nothing behind: no VM record, overlay,
//! cgroup, QEMU, or unusable file in the cache.

mod common;
mod vms_support;

use common::TestDaemon;
use tonic::Code;
use vms_support::*;

fn nothing_left(d: &TestDaemon, name: &str) {
    assert!(
        !overlay(d, name).parent().expect("dir").exists(),
        "no overlay dir for {name}"
    );
    assert!(vm_cgroups(d, name).is_empty(), "no cgroup for {name}");
    assert!(qemus(d, name).is_empty(), "no qemu for {name}");
    let tmp = d.state_dir.join("vms/cache/tmp");
    let partial: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").flatten().collect();
    assert!(partial.is_empty(), "no partial downloads: {partial:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_are_refused_with_clear_errors_and_leave_nothing_behind() {
    if !require_vms("vms_must_refuse_bad_images") {
        return;
    }
    let server = FileServer::start(fixtures()).await;
    let d = daemon().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(d.client().await.channel());
    let served = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "vms.Vms".into(),
        })
        .await
        .expect("health of vms.Vms")
        .into_inner();
    assert_eq!(
        served.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let e = run(&d, "nf", &server.url("no-such-disk.qcow2"))
        .await
        .expect_err("404");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("404"), "{}", e.message());
    nothing_left(&d, "nf");

    let e = run(&d, "text", &server.url("not-a-disk.qcow2"))
        .await
        .expect_err("not a disk");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not usable"), "{}", e.message());
    nothing_left(&d, "text");
    let cached: Vec<_> = std::fs::read_dir(d.state_dir.join("vms/cache/sha256"))
        .expect("cache")
        .flatten()
        .collect();
    assert!(
        cached.is_empty(),
        "a file that is not a disk is not kept: {cached:?}"
    );

    let pinned = format!("{}#sha256={}", server.url("disk.qcow2"), "0".repeat(64));
    let e = run(&d, "pin", &pinned).await.expect_err("digest mismatch");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("digest mismatch"), "{}", e.message());
    nothing_left(&d, "pin");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let e = run(&d, "far", &format!("http://{closed}/disk.qcow2"))
        .await
        .expect_err("unreachable");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("unreachable"), "{}", e.message());
    nothing_left(&d, "far");

    let e = run(&d, "ftp", "ftp://127.0.0.1/disk.qcow2")
        .await
        .expect_err("scheme");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = run(&d, "none", "").await.expect_err("no image");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    assert!(list(&d).await.is_empty(), "no VM was recorded");
}
