//! The instance image (hack/build-instance-image.sh) boots in QEMU exactly
//! as docs/instances.md gives the argv: auraed is PID 1, brings up the
//! network from `ip=`, serves mTLS on the instance's address with the
//! certificate in the per-instance archive, refuses a client from another
//! CA, runs executables in the guest, mounts the parent's 9p share
//! read-only, and a SIGTERM to PID 1 stops the
//! daemon and its workloads and makes QEMU exit by itself.

mod common;
mod instance_support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aurae_client::Client;
use aurae_proto::runtime::ExecutableStatus;
use auraed::instances::cpio::{write_instance_initramfs, InstancePki};
use common::exe;
use instance_support::*;

const NAME: &str = "inst-test";

/// QEMU, killed if the test ends before it exits.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(c: &Client, command: &str) -> ExecutableStatus {
    c.run_executable(exe(command)).await.expect(command)
}

fn console(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Polls until the instance answers Status; fails if QEMU exits first.
async fn wait_answering(qemu: &mut Qemu, config: &aurae_client::AuraeConfig, log: &Path) -> Client {
    let deadline = Instant::now() + BOOT;
    loop {
        if let Ok(Some(status)) = qemu.0.try_wait() {
            panic!(
                "qemu exited with {status} before auraed answered:\n{}",
                console(log)
            );
        }
        if let Ok(c) = Client::connect(config).await {
            if c.status().await.is_ok() {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the instance did not answer within {BOOT:?}:\n{}",
            console(log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn instance_image_must_boot_auraed_as_pid1() {
    if !require_instances("instance_image_must_boot_auraed_as_pid1") {
        return;
    }
    let image = tokio::task::spawn_blocking(image).await.expect("build");
    let kernel_release =
        std::fs::read_to_string(image.join("kernel.release")).expect("kernel.release");
    let dir = tempfile::tempdir().expect("tempdir");

    // A /24 of its own per run, the instance on .2, the host's bridge on .1.
    let tag = std::process::id() % 10_000;
    let third = (std::process::id() % 200 + 20) as u8;
    let gateway = Ipv4Addr::new(10, 251, third, 1);
    let address = Ipv4Addr::new(10, 251, third, 2);
    let net = TapOnBridge::new(&tag.to_string(), gateway, 24);

    let pki = TestPki::new(NAME, address);
    let initramfs = dir.path().join("initramfs.cpio");
    write_instance_initramfs(
        &image.join("initramfs.cpio"),
        &InstancePki {
            ca_crt: pki.ca.cert_pem.as_bytes(),
            server_crt: pki.server.cert_pem.as_bytes(),
            server_key: pki.server.key_pem.as_bytes(),
        },
        &initramfs,
    )
    .expect("per-instance initramfs");

    let cmdline = format!(
        "console=ttyS0 reboot=t panic=-1 quiet ip={address}::{gateway}:255.255.255.0:{NAME}:eth0:off aurae.port=8080 aurae.preload=aurae-images"
    );
    let share = dir.path().join("share");
    std::fs::create_dir(&share).expect("share");
    std::fs::write(share.join("marker"), "from the parent\n").expect("marker");
    let log = dir.path().join("console.log");
    let mut qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(qemu_args(
                &image,
                &initramfs,
                &cmdline,
                &net.tap,
                "52:54:00:12:34:56",
                &share,
            ))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("console log"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start qemu"),
    );
    let config = pki.client_config(&dir.path().join("client"), NAME, &format!("{address}:8080"));
    let c = wait_answering(&mut qemu, &config, &log).await;

    // The instance's name, from the kernel command line.
    let status = c.status().await.expect("status");
    assert_eq!(status.meta.map(|m| m.name).as_deref(), Some(NAME));

    // The command ran in the guest: its kernel, its PID 1.
    let uname = run(&c, "/bin/busybox uname -r").await;
    assert_eq!(
        (uname.stdout.trim(), uname.exit_code.as_str()),
        (kernel_release.trim(), "0")
    );
    let init = run(&c, "/bin/busybox readlink /proc/1/exe").await;
    assert_eq!(init.stdout.trim(), "/init", "PID 1 is the image's auraed");
    let hostname = run(&c, "/bin/busybox hostname").await;
    assert_eq!(hostname.stdout.trim(), NAME);

    // Containers can pivot_root: / is a tmpfs, not the kernel's rootfs.
    let root_fs = run(
        &c,
        "/bin/busybox awk '$5 == \"/\" { print $(NF-2) }' /proc/self/mountinfo",
    )
    .await;
    assert_eq!(root_fs.stdout.trim(), "tmpfs", "{root_fs:?}");
    // cgroup v2 with controllers for the workloads, and overlay for cells.
    let controllers = run(&c, "/bin/busybox cat /sys/fs/cgroup/cgroup.subtree_control").await;
    for controller in ["memory", "pids", "cpu"] {
        assert!(
            controllers
                .stdout
                .split_whitespace()
                .any(|w| w == controller),
            "{controllers:?}"
        );
    }
    let filesystems = run(&c, "/bin/busybox cat /proc/filesystems").await;
    assert!(filesystems.stdout.contains("overlay"), "{filesystems:?}");

    // The parent's share, read-only.
    let marker = run(&c, "/bin/busybox cat /var/lib/aurae/images-preload/marker").await;
    assert_eq!(marker.stdout, "from the parent\n", "{marker:?}");
    let write = run(&c, "/bin/busybox touch /var/lib/aurae/images-preload/x").await;
    assert_ne!(write.exit_code, "0", "the share is writable: {write:?}");

    // A client certificate from another CA is refused.
    let (from, to) = validity();
    let other = auraed::pki::generate_ca(from, to).expect("other ca");
    let stranger =
        auraed::pki::issue_client_with_validity(&other.cert_pem, &other.key_pem, "admin", from, to)
            .expect("stranger");
    let stranger_config = client_config(
        &dir.path().join("stranger"),
        &pki.ca.cert_pem,
        &stranger,
        NAME,
        &format!("{address}:8080"),
    );
    let refused = match Client::connect(&stranger_config).await {
        Err(_) => true,
        Ok(s) => s.status().await.is_err(),
    };
    assert!(refused, "a client of another CA was served");

    // A workload that would run on, then SIGTERM to PID 1: the daemon
    // stops it and exits, PID 1 resets, QEMU exits by itself.
    let sleeper = {
        let c = c.clone();
        tokio::spawn(async move { c.run_executable(exe("/bin/busybox sleep 600")).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ps = run(&c, "/bin/busybox ps -o pid,args").await;
        if ps.stdout.contains("busybox sleep 600") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workload did not start: {ps:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The call may end with the daemon before it answers.
    let _ = c.run_executable(exe("/bin/busybox kill -TERM 1")).await;
    let deadline = Instant::now() + BOOT;
    let exit = loop {
        if let Some(status) = qemu.0.try_wait().expect("wait qemu") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "qemu still runs {BOOT:?} after SIGTERM to PID 1:\n{}",
            console(&log)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let text = console(&log);
    assert!(exit.success(), "qemu exited with {exit}:\n{text}");
    assert!(
        text.contains("auraed stopped"),
        "the daemon did not stop cleanly:\n{text}"
    );
    assert!(text.contains("the daemon ended (exit code 0)"), "{text}");
    let slept = sleeper.await.expect("sleeper task");
    if let Ok(s) = slept {
        assert_ne!(
            s.exit_code, "0",
            "the sleep was stopped, not finished: {s:?}"
        );
    }
}
