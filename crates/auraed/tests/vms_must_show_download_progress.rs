//! While RunVirtualMachine downloads a disk image, List shows the VM being
//! created (STATUS_STANDBY) with the bytes received of the Content-Length;
//! once the call ends the progress is gone: no entry after a failure, and
//! the running VM without progress after a success.
//!
//! `aer vm run` draws it as a bar on a terminal (a pty from `script`), and
//! draws nothing when piped.
//!
//! The test's server sends the first half of the image, then waits until
//! the test has seen the progress: no timing is assumed.

mod common;
mod vms_support;

use std::time::{Duration, Instant};

use aurae_proto::meta::Status;
use aurae_proto::vms::VmInfo;
use common::aer::{aer, aer_path};
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

/// Waits for `child`, within a TCG boot's time.
async fn finished(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(BOOT, child.wait_with_output())
        .await
        .expect("aer ends within a boot")
        .expect("aer's output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aer_vm_run_draws_the_progress_on_a_terminal_and_nothing_when_piped() {
    if !require_vms("vms_must_show_download_progress (aer)") {
        return;
    }
    let disk = std::fs::read(fixtures().join("disk.qcow2")).expect("the test disk");
    let total = disk.len() as u64;
    let d = daemon().await;

    // On a terminal: `script` gives aer a pty; its screen is script's stdout.
    let (url, release) = half_then_wait(disk.clone()).await;
    let command = format!(
        "{} --config {} vm run tty {url}",
        aer_path().display(),
        d.config_path.display()
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    let mut screen = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let wanted = b"downloading";
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.windows(wanted.len()).any(|w| w == wanted) {
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(left, screen.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => panic!(
                "no bar on aer's terminal; it showed:\n{}\n{}",
                String::from_utf8_lossy(&seen),
                d.log()
            ),
        }
    }
    release.send(()).expect("the server waits");
    let out = finished(child).await;
    let mut rest = Vec::new();
    use tokio::io::AsyncReadExt;
    let _ = screen.read_to_end(&mut rest).await;
    seen.extend_from_slice(&out.stdout);
    seen.extend_from_slice(&rest);
    let shown = String::from_utf8_lossy(&seen);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("MiB"), "sizes on the bar: {shown}");
    assert!(shown.contains("vm tty: STATUS_ACTIVE"), "{shown}");
    call(&d, Call::Delete, "tty").await.expect("delete tty");

    // Piped: the same download, no bar.
    let (url, release) = half_then_wait(disk).await;
    let child = tokio::process::Command::from(aer(&d, &["vm", "run", "piped", &url]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("aer");
    let v = listed_downloading(&d, "piped").await;
    assert!(v.progress.is_some_and(|p| p.bytes_total == total));
    release.send(()).expect("the server waits");
    let out = finished(child).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("vm piped: STATUS_ACTIVE pid "),
        "{stdout}"
    );
    assert_eq!(
        stderr, "aer: fetching the disk image and booting piped...\n",
        "nothing drawn when piped"
    );
    call(&d, Call::Delete, "piped").await.expect("delete piped");
}
