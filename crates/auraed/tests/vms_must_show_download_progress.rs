//! While RunVirtualMachine downloads a disk image, List shows the VM being
//! created (STATUS_STANDBY) with the bytes received of the Content-Length;
//! once the call ends the progress is gone: no entry after a failure, and
//! the running VM without progress after a success.
//!
//! The test's server sends the first half of the image, then waits until
//! the test has seen the progress: no timing is assumed.

mod common;
mod vms_support;

use std::time::{Duration, Instant};

use aurae_proto::meta::Status;
use aurae_proto::vms::VmInfo;
use common::TestDaemon;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tonic::Code;
use vms_support::*;

/// Serves `body` to one GET: the head and the first half at once, the
/// rest when `release` fires.
async fn half_then_wait(body: Vec<u8>) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/slow.qcow2", listener.local_addr().expect("addr"));
    let (release, released) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let (conn, _) = listener.accept().await.expect("accept");
        let (r, mut w) = conn.into_split();
        let mut r = BufReader::new(r);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.expect("request") == 0 || line.trim().is_empty() {
                break;
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let half = body.len() / 2;
        w.write_all(head.as_bytes()).await.expect("head");
        w.write_all(&body[..half]).await.expect("first half");
        w.flush().await.expect("flush");
        let _ = released.await;
        w.write_all(&body[half..]).await.expect("second half");
    });
    (url, release)
}

/// Lists until `name` shows bytes received, within a minute.
async fn listed_downloading(d: &TestDaemon, name: &str) -> VmInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let seen = list(d)
            .await
            .remove(name)
            .filter(|v| v.progress.as_ref().is_some_and(|p| p.bytes_done > 0));
        match seen {
            Some(v) => return v,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!(
        "no download progress of {name} listed within a minute:\n{}",
        d.log()
    )
}

/// Runs `name` from `body` served in two halves, checks what List says
/// between them, and returns the call's answer.
async fn run_watched(
    d: &TestDaemon,
    name: &str,
    body: Vec<u8>,
    pin: &str,
) -> Result<aurae_proto::runtime::VirtualMachineStatus, tonic::Status> {
    let total = body.len() as u64;
    let (url, release) = half_then_wait(body).await;
    let image = format!("{url}{pin}");
    let call = {
        let client = d.client().await;
        let vm = vm(name, &image);
        tokio::spawn(async move {
            client
                .core()
                .run_virtual_machine(vm)
                .await
                .map(|r| r.into_inner())
        })
    };
    let v = listed_downloading(d, name).await;
    assert_eq!(v.status, Status::Standby as i32, "{v:?}");
    assert_eq!(v.image, image);
    assert!(v.proc.is_none() && v.digest.is_empty(), "{v:?}");
    let p = v.progress.expect("progress");
    assert_eq!(p.phase, "downloading");
    assert_eq!(p.bytes_total, total, "the Content-Length");
    assert!(
        p.bytes_done > 0 && p.bytes_done < total,
        "half of {total} bytes sent: {p:?}"
    );
    release.send(()).expect("the server waits");
    call.await.expect("the call's task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_progress_of_a_disk_image_download_until_the_call_ends() {
    if !require_vms("vms_must_show_download_progress") {
        return;
    }
    let disk = std::fs::read(fixtures().join("disk.qcow2")).expect("the test disk");
    let d = daemon().await;

    // A download that fails its pin: progress while it lasts, then nothing.
    let e = run_watched(
        &d,
        "pinned",
        disk.clone(),
        &format!("#sha256={}", "0".repeat(64)),
    )
    .await
    .expect_err("digest mismatch");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(list(&d).await.is_empty(), "a failed creation is not listed");

    // A download that boots: the VM is listed running, without progress.
    let s = run_watched(&d, "slow", disk, "").await.expect("run slow");
    assert_eq!(s.status, Status::Active as i32, "{s:?}");
    let listed = list(&d).await;
    let slow = listed.get("slow").expect("slow listed");
    assert_eq!(slow.status, Status::Active as i32, "{slow:?}");
    assert!(
        slow.progress.is_none(),
        "no progress once created: {slow:?}"
    );
    assert_eq!(listed_pid(slow), pid_of(&s));
    call(&d, Call::Delete, "slow").await.expect("delete slow");
    assert!(list(&d).await.is_empty());
}
