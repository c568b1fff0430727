//! `VirtualMachine.network = "bridge:NAME"`: the daemon makes a TAP on the
//! existing bridge for each boot, QEMU uses it, and it is gone whenever the
//! VM is off; a missing bridge or a bad value is refused and leaves nothing.

mod common;
mod vms_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use aurae_proto::meta::Status;
use vms_support::*;

/// A Linux bridge of the test's own, removed when dropped.
struct Bridge(String);

impl Bridge {
    fn new(name: &str) -> Self {
        if link(name).exists() {
            ip(&["link", "del", name]);
        }
        assert!(
            ip(&["link", "add", name, "type", "bridge"]),
            "ip link add {name}"
        );
        Bridge(name.to_string())
    }

    /// The interfaces attached to it.
    fn ports(&self) -> Vec<String> {
        let dir = Path::new("/sys/class/net").join(&self.0).join("brif");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("brif")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        ip(&["link", "del", &self.0]);
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

fn link(name: &str) -> PathBuf {
    Path::new("/sys/class/net").join(name)
}

fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
}

/// The one TAP on `br`, checked from both sides: the bridge's ports and
/// the TAP's `master`.
fn the_tap(br: &Bridge) -> String {
    let ports = br.ports();
    assert_eq!(ports.len(), 1, "one port on {}: {ports:?}", br.0);
    let tap = ports[0].clone();
    assert!(tap.len() <= 15 && tap.starts_with("vt"), "{tap}");
    let master = std::fs::read_link(link(&tap).join("master")).expect("master link");
    assert_eq!(
        master.file_name().and_then(|n| n.to_str()),
        Some(br.0.as_str())
    );
    assert!(
        link(&tap).join("tun_flags").exists(),
        "{tap} is a tun/tap device"
    );
    tap
}

async fn run_on(
    d: &common::TestDaemon,
    name: &str,
    image: &str,
    network: &str,
) -> Result<aurae_proto::runtime::VirtualMachineStatus, tonic::Status> {
    let mut v = vm(name, image);
    v.network = network.into();
    d.client()
        .await
        .core()
        .run_virtual_machine(v)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_must_attach_to_a_bridge_through_a_tap_of_their_own() {
    if !require_vms("vms_must_attach_to_a_bridge") {
        return;
    }
    let br = Bridge::new(&format!("aurbr{:x}", std::process::id() & 0xfffff));
    let server = FileServer::start(fixtures()).await;
    let mut d = daemon().await;
    let image = server.url("disk.qcow2");

    let s = run_on(&d, "bridged", &image, &format!("bridge:{}", br.0))
        .await
        .expect("run bridged");
    assert_eq!(s.status, Status::Active as i32);
    let pid = pid_of(&s);
    let tap = the_tap(&br);
    let line = cmdline(pid);
    assert!(
        line.contains(&format!("tap,id=net0,ifname={tap},script=no,downscript=no")),
        "{line}"
    );
    console_until(&d, pid, MARKER, 0).await;

    // Stop: the TAP goes with the hypervisor; Start: a new one on the bridge.
    call(&d, Call::Stop, "bridged").await.expect("stop");
    assert!(!link(&tap).exists(), "stop removes {tap}");
    assert!(br.ports().is_empty());
    let s = call(&d, Call::Start, "bridged").await.expect("start");
    let pid = pid_of(&s);
    assert_eq!(the_tap(&br), tap, "the same name, made again");
    assert!(cmdline(pid).contains(&format!("ifname={tap},")));
    console_until(&d, pid, MARKER, 0).await;

    // Delete: nothing left.
    call(&d, Call::Delete, "bridged").await.expect("delete");
    assert!(!link(&tap).exists(), "delete removes {tap}");
    assert!(qemus(&d, "bridged").is_empty());

    // A missing bridge, a bad value: refused, nothing made.
    let before = interfaces();
    let missing = format!("aurnx{:x}", std::process::id() & 0xfffff);
    let err = run_on(&d, "nobridge", &image, &format!("bridge:{missing}"))
        .await
        .expect_err("missing bridge");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&missing), "{}", err.message());
    for bad in ["bogus", "bridge:", "bridge:a/b"] {
        let err = run_on(&d, "nobridge", &image, bad)
            .await
            .expect_err("bad network");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}: {err:?}");
    }
    assert!(!list(&d).await.contains_key("nobridge"), "no record");
    assert!(!overlay(&d, "nobridge").exists(), "no overlay");
    assert!(vm_cgroups(&d, "nobridge").is_empty(), "no cgroup");
    assert!(qemus(&d, "nobridge").is_empty(), "no qemu");
    assert_eq!(interfaces(), before, "no tap");

    // A TAP of this daemon's naming that no VM owns (as a daemon that died
    // mid-create leaves it) is removed when the daemon starts.
    assert!(
        ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]),
        "make {tap}"
    );
    d.restart().await;
    assert!(!link(&tap).exists(), "the restarted daemon removes {tap}");
}
